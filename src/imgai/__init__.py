"""imgai: train, evaluate and use image classifiers from a folder of images.

The package is importable without TensorFlow or Keras: heavy frameworks are imported inside the
functions that need them, so ``imgai --help`` and config checks stay fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
