"""imgai: train, evaluate and use image classifiers from a folder of images.

``from imgai import train, evaluate, calibrate, predict, explain, load_model, load_config`` gives the Python
API (:mod:`imgai.api`). Importing imgai stays light (no Keras, no TensorFlow, no pydantic): the
API is loaded on first use, and heavy frameworks inside the functions that need them, so
``imgai --help`` and config checks stay fast.

``train``, ``evaluate``, ``predict`` and ``explain`` are also the names of pipeline modules; as
attributes of the package they are always the API functions (the modules stay importable as
``imgai.train`` etc. through ``import`` / ``from imgai.train import ...``).
"""

import sys
import types

__version__ = "0.1.0"

_API = (
    "Config",
    "EvalResult",
    "ExplainResult",
    "ImgaiError",
    "LoadedModel",
    "ModelInfo",
    "Prediction",
    "TrainResult",
    "calibrate",
    "evaluate",
    "explain",
    "load_config",
    "load_model",
    "predict",
    "resume",
    "train",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from imgai import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imgai' has no attribute '{name}'")


class _Package(types.ModuleType):
    # Importing a submodule sets it as an attribute of its package; for the API's names that
    # would replace the function by the module (``from imgai import train`` giving the module).
    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
