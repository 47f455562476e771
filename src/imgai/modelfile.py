"""Model files: a ``.keras`` archive with imgai's metadata inside, saved and loaded.

:class:`ModelInfo` is what a reader needs to feed the model (class names, image size, colour
mode, resize filter) and where it came from (architecture, versions). It is read once, by
:func:`load_model`, and passed to eval, predict, report and explain; :meth:`ModelInfo.from_file`
is the one place that decides what a file without imgai's metadata (plain Keras) means.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from imgai.data import DecodeSpec
from imgai.errors import ImgaiError

METADATA_MEMBER = "imgai.json"
# What a file saved by plain Keras, without imgai.json, is taken to mean.
FALLBACK_IMAGE_SIZE = (224, 224)
FALLBACK_INTERPOLATION = "bilinear"


@dataclass(frozen=True)
class ModelInfo:
    """Everything about a trained model beyond its weights."""

    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    color_mode: str = "rgb"
    interpolation: str = FALLBACK_INTERPOLATION
    model: str | None = None  # registry name of the architecture (None: unknown)
    imgai_version: str | None = None
    keras_version: str | None = None
    # Set by calibration: the softmax temperature folded into the head (1.0 = none), and the
    # confidence below which predict answers "unknown" by default (None = always answer).
    temperature: float | None = None
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "image_size", tuple(int(d) for d in self.image_size))

    @property
    def channels(self) -> int:
        return self.decode_spec.channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(self.image_size, self.color_mode, self.interpolation)

    def to_metadata(self) -> dict[str, Any]:
        """The ``imgai.json`` member (lists, not tuples; unknown fields left out)."""
        data = asdict(self)
        data["class_names"], data["image_size"] = list(self.class_names), list(self.image_size)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_file(cls, metadata: dict[str, Any], model) -> ModelInfo:
        """``metadata`` as read from a file, completed from the model where it says nothing: class
        names ``class_0, class_1, ...``, the Resizing layer's size (else the input's, else 224x224),
        grayscale for one input channel, bilinear."""
        num_classes = int(model.output_shape[-1])
        names = metadata.get("class_names")
        if not names or len(names) != num_classes:
            names = [f"class_{i}" for i in range(num_classes)]
        size = metadata.get("image_size")
        if size is None:
            resize = next((l for l in model.layers if l.__class__.__name__ == "Resizing"), None)
            shape = model.input_shape
            if resize is not None:
                size = (resize.height, resize.width)
            elif shape[1] and shape[2]:
                size = (shape[1], shape[2])
            else:
                size = FALLBACK_IMAGE_SIZE
        color_mode = metadata.get("color_mode") or ("grayscale" if model.input_shape[-1] == 1 else "rgb")
        return cls(
            class_names=tuple(names),
            image_size=tuple(size),
            color_mode=color_mode,
            interpolation=metadata.get("interpolation") or FALLBACK_INTERPOLATION,
            model=metadata.get("model"),
            imgai_version=metadata.get("imgai_version"),
            keras_version=metadata.get("keras_version"),
            temperature=metadata.get("temperature"),
            min_confidence=metadata.get("min_confidence"),
        )


class LoadedModel(NamedTuple):
    """``model, info = load_model(path)``."""

    model: Any
    info: ModelInfo


def save_model(
    model, path: str | Path, info: ModelInfo | dict[str, Any], extra_members: dict[str, str] | None = None
) -> None:
    """Save ``model`` to ``path`` atomically, with imgai's metadata inside the archive.

    ``extra_members`` (name -> text) are written into the same archive, so they can never
    disagree with the weights (training stores its resume state this way).
    """
    from imgai.runs import atomic_path

    metadata = info.to_metadata() if isinstance(info, ModelInfo) else dict(info)
    with atomic_path(path, suffix=".keras") as tmp:  # Keras insists on the .keras extension
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
            for name, text in (extra_members or {}).items():
                archive.writestr(name, text)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """imgai's metadata from a ``.keras`` file as stored (empty if it was saved by plain Keras)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER in archive.namelist():
                if archive.getinfo(METADATA_MEMBER).file_size > 1 << 20:  # metadata is a few hundred bytes
                    raise ImgaiError(
                        f"model file '{path}' has a {METADATA_MEMBER} over 1 MiB: not an imgai model"
                    )
                data = json.loads(archive.read(METADATA_MEMBER))
                return data if isinstance(data, dict) else {}
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError):
        pass
    return {}


def check_metadata(metadata: dict[str, Any], path: str | Path, channels: int) -> None:
    """Metadata read from a model file is untrusted input: check it like a config before any of
    it sizes an array or reaches a terminal (a crafted image_size of [100000, 100000] would
    otherwise allocate gigabytes per image)."""
    from imgai.config import MAX_IMAGE_SIDE

    def bad(what: str) -> ImgaiError:
        return ImgaiError(f"model file '{path}' has invalid metadata ({METADATA_MEMBER}): {what}")

    size = metadata.get("image_size")
    if size is not None:
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in size
            )
        ):
            raise bad(f"image_size must be [height, width], each 1 to {MAX_IMAGE_SIDE}")
    mode = metadata.get("color_mode")
    if mode is not None:
        if mode not in ("rgb", "grayscale"):
            raise bad("color_mode must be rgb or grayscale")
        if (3 if mode == "rgb" else 1) != channels:
            raise bad(f"color_mode {mode} does not match the model's {channels}-channel input")
    if metadata.get("interpolation", "bilinear") not in ("bilinear", "nearest", "bicubic"):
        raise bad("interpolation must be bilinear, nearest or bicubic")
    for key, low, high in (("temperature", 1e-3, 1e3), ("min_confidence", 0.0, 1.0)):
        value = metadata.get(key)
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high
        ):
            raise bad(f"{key} must be a number from {low:g} to {high:g}")
    names = metadata.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("class_names must be a list of names")
        if any(len(n) > 1000 or not n.isprintable() for n in names):
            raise bad("a class name is longer than 1000 characters or holds a control character")


def _check_keras_file(path: Path) -> None:
    if not path.is_file():
        raise ImgaiError(
            f"model file '{path}' not found: pass a .keras file written by 'imgai train' as `model_path`"
        )
    if not zipfile.is_zipfile(path):
        raise ImgaiError(
            f"'{path}' is not a Keras model file (.keras zip archive): pass a checkpoint such as runs/run1/best.keras"
        )
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ImgaiError(
                f"'{path}' is a zip file but not a Keras model (no config.json inside): pass a .keras file"
            )


def load_model(path: str | Path) -> LoadedModel:
    """Load a ``.keras`` file for inference (Keras safe mode on). Returns ``(model, info)``."""
    path = Path(path)
    _check_keras_file(path)
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise ImgaiError(
            f"could not load model '{path}' ({first}): is it a complete .keras file from imgai train?"
        ) from None
    metadata = read_metadata(path)
    check_metadata(metadata, path, int(model.input_shape[-1]))
    return LoadedModel(model, ModelInfo.from_file(metadata, model))
