"""Exported artifacts run by their own runtimes: ONNX Runtime, LiteRT, OpenVINO, TensorFlow.

:func:`load_artifact` opens a file written by ``imgai export`` (``model.onnx``, ``model.tflite``,
``model.xml`` or a SavedModel folder) and returns an object that answers the two calls imgai's
inference path makes of a Keras model, ``output_shape`` and ``predict_on_batch``, plus the
metadata (class names, image size, colour mode) read from the ``imgai.json`` beside it or from
inside the artifact. ``imgai predict`` and ``imgai eval`` therefore stream, score and report an
artifact through exactly the code they use for a ``.keras`` file.

Nothing here imports TensorFlow or Keras, except the SavedModel runtime (which is TensorFlow):
predicting with an ONNX or LiteRT file starts in a fraction of a second and runs where neither is
installed. Every artifact takes raw 0..255 pixels as float32 (N, H, W, C), any H and W; the resize
and rescale layers are inside it (docs/export.md lists the exact tensor per format).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from imgai.errors import ImgaiError

SIDECAR = "imgai.json"
ONNX_METADATA_KEY = "imgai"
# format name -> how the artifact is recognised and what to install to run it
KINDS = {
    "onnx": (".onnx", "onnxruntime", "pip install 'imgai[export]' (or: pip install onnxruntime)"),
    "litert": (".tflite", "ai_edge_litert", "pip install 'imgai[export]' (or: pip install ai-edge-litert)"),
    "openvino": (".xml", "openvino", "pip install 'imgai[openvino]' (or: pip install openvino)"),
    "savedmodel": ("", "tensorflow", "pip install tensorflow"),
}


def artifact_kind(path: str | Path) -> str | None:
    """The export format of ``path`` ("onnx", "litert", "openvino", "savedmodel"), or None for
    anything else (a ``.keras`` file included)."""
    path = Path(path)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    for kind, (suffix, _module, _install) in KINDS.items():
        if suffix and path.suffix.lower() == suffix:
            return kind
    return None


def is_artifact(path: str | Path) -> bool:
    return artifact_kind(path) is not None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """imgai's metadata for an artifact: the ``imgai.json`` beside it (named ``<stem>.imgai.json``
    or ``imgai.json``), else what the artifact carries inside. Empty if there is none."""
    path = Path(path)
    kind = artifact_kind(path)
    candidates = [path.with_name(path.name + "." + SIDECAR), path.parent / SIDECAR]
    if kind == "savedmodel":
        candidates.insert(0, path / "assets" / SIDECAR)
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and data.get("class_names"):
                return data
    return _embedded_metadata(path, kind)


def _embedded_metadata(path: Path, kind: str | None) -> dict[str, Any]:
    try:
        if kind == "litert" and zipfile.is_zipfile(path):  # the associated file appended by export
            with zipfile.ZipFile(path) as archive:
                if SIDECAR in archive.namelist():
                    return json.loads(archive.read(SIDECAR))
        if kind == "onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            for prop in model.metadata_props:
                if prop.key == ONNX_METADATA_KEY:
                    return json.loads(prop.value)
    except Exception:  # unreadable metadata is the same as none: the caller says what is missing
        return {}
    return {}


def _require(kind: str):
    """Import the runtime of ``kind`` or raise one line naming the pip command."""
    import importlib

    _suffix, module, install = KINDS[kind]
    try:
        return importlib.import_module(module)
    except ImportError:
        if kind == "litert":  # TensorFlow's own interpreter runs the same files
            try:
                return importlib.import_module("tensorflow")
            except ImportError:
                pass
        raise ImgaiError(
            f"running a {kind} artifact needs {module}, which is not installed: {install}"
        ) from None


def _threads() -> int:
    return max(1, os.cpu_count() or 1)


class Artifact:
    """An exported model behind the two calls imgai's inference path uses."""

    kind = ""

    def __init__(self, path: Path, metadata: dict[str, Any]):
        self.path = path
        self.metadata = metadata
        self.output_shape = (None, len(metadata["class_names"]))

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def runtime(self) -> str:
        """Which runtime (and version) runs this artifact, for reports."""
        return self.kind


class OnnxArtifact(Artifact):
    kind = "onnx"

    def __init__(self, path, metadata):
        super().__init__(path, metadata)
        ort = _require("onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = _threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__

    def predict_on_batch(self, x):
        return self.session.run(None, {self.input_name: np.asarray(x, dtype=np.float32)})[0]

    @property
    def runtime(self):
        return f"onnxruntime {self.version}"


class LiteRTArtifact(Artifact):
    kind = "litert"

    def __init__(self, path, metadata):
        super().__init__(path, metadata)
        module = _require("litert")
        if module.__name__ == "tensorflow":
            interpreter_class, self.version = module.lite.Interpreter, f"tf.lite {module.__version__}"
        else:
            from ai_edge_litert.interpreter import Interpreter as interpreter_class

            self.version = "ai-edge-litert"
        from imgai.quiet import stderr_parked

        with stderr_parked():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = interpreter_class(model_path=str(path), num_threads=_threads())
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.shape: tuple = tuple(self.input["shape"])
        self.first = True

    def predict_on_batch(self, x):
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape) != self.shape:  # inputs are dynamic (any batch, any image size)
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.shape = tuple(x.shape)
        dtype = self.input["dtype"]
        if dtype != np.float32:  # an integer input tensor: quantize the pixels with its scale
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], x)
        if self.first:
            from imgai.quiet import stderr_parked

            with stderr_parked():  # the delegate announces itself on the first run
                self.interpreter.invoke()
            self.first = False
        else:
            self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if y.dtype != np.float32:
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    @property
    def runtime(self):
        return self.version


class OpenVINOArtifact(Artifact):
    kind = "openvino"

    def __init__(self, path, metadata):
        super().__init__(path, metadata)
        ov = _require("openvino")
        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)), "CPU", {"INFERENCE_NUM_THREADS": _threads()}
        )
        self.version = ov.__version__

    def predict_on_batch(self, x):
        result = self.compiled(np.asarray(x, dtype=np.float32))
        return np.asarray(result[self.compiled.output(0)])

    @property
    def runtime(self):
        return f"openvino {self.version.split('-')[0]}"


class SavedModelArtifact(Artifact):
    kind = "savedmodel"

    def __init__(self, path, metadata):
        super().__init__(path, metadata)
        tf = _require("savedmodel")
        self.tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.serve = getattr(self.loaded, "serve", None) or self.loaded.signatures["serving_default"]
        self.version = tf.__version__

    def predict_on_batch(self, x):
        y = self.serve(self.tf.constant(np.asarray(x, dtype=np.float32)))
        if isinstance(y, dict):  # a signature returns a dict of outputs
            y = next(iter(y.values()))
        return np.asarray(y)

    @property
    def runtime(self):
        return f"tensorflow {self.version}"


_CLASSES = {"onnx": OnnxArtifact, "litert": LiteRTArtifact, "openvino": OpenVINOArtifact}
_CLASSES["savedmodel"] = SavedModelArtifact


def load_artifact(path: str | Path, metadata: dict[str, Any] | None = None):
    """Open an exported artifact with its own runtime. Returns ``(artifact, info)``, a
    :class:`~imgai.modelfile.LoadedModel` like :func:`imgai.modelfile.load_model`; raises
    ImgaiError for a missing, wrong or corrupt file."""
    path = Path(path)
    kind = artifact_kind(path)
    if kind is None:
        raise ImgaiError(
            f"'{path}' is not an exported model: pass a .keras, .onnx, .tflite or .xml file "
            "or a SavedModel folder written by 'imgai export'"
        )
    if not path.exists():
        raise ImgaiError(f"model file '{path}' not found: pass a file written by 'imgai export'")
    meta = dict(metadata if metadata is not None else read_metadata(path))
    if not meta.get("class_names") or not meta.get("image_size"):
        raise ImgaiError(
            f"'{path}' carries no class names or image size (no {SIDECAR} beside it): keep the "
            f"{SIDECAR} that 'imgai export' wrote next to the artifact"
        )
    meta.setdefault("color_mode", "rgb")
    meta.setdefault("interpolation", "bilinear")
    try:
        artifact = _CLASSES[kind](path, meta)
    except ImgaiError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise ImgaiError(
            f"could not load {kind} artifact '{path}' ({first}): is it a complete file from 'imgai export'?"
        ) from None
    from imgai.modelfile import LoadedModel, ModelInfo

    info = ModelInfo(
        class_names=tuple(meta["class_names"]),
        image_size=tuple(meta["image_size"]),
        color_mode=meta["color_mode"],
        interpolation=meta["interpolation"],
        model=meta.get("model"),
        imgai_version=meta.get("imgai_version"),
        keras_version=meta.get("keras_version"),
    )
    return LoadedModel(artifact, info)


def load_any_model(path: str | Path):
    """``(model, info)`` for a ``.keras`` file (Keras) or an exported artifact (its runtime)."""
    if is_artifact(path):
        return load_artifact(path)
    from imgai.modelfile import load_model

    return load_model(path)


def artifact_size(path: str | Path) -> int:
    """Bytes on disk: the file, its weights file (OpenVINO's .bin), or a SavedModel folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    size = path.stat().st_size
    weights = path.with_suffix(".bin")
    if path.suffix == ".xml" and weights.is_file():
        size += weights.stat().st_size
    return size
