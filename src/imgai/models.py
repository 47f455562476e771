"""Model registry, builders, and ``.keras`` files that carry their class names.

Every model is built the same way by :func:`create_model`::

    Input (any height x width, C channels, pixels 0..255)
      -> Resizing(image_size)            # inside the model, so any image size can be fed
      -> <registry entry>                # starts with its own normalisation, e.g. Rescaling(1/255)
      -> softmax over the classes

Adding an architecture is one registry entry: a function ``(inputs, num_classes, model_cfg) ->
outputs`` decorated with ``@register("name")``. Because the resize and the normalisation are
layers, train, eval and predict can never preprocess differently, and the saved file works in a
plain Python with Keras alone.

Saved files are ordinary ``.keras`` archives with one extra member, ``imgai.json`` (class names,
image size, colour mode), which ``keras.saving.load_model`` ignores.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

from imgai.errors import ImgaiError

METADATA_MEMBER = "imgai.json"

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str):
    """Decorator: add a model builder to the registry under ``name``."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = builder
        return builder

    return wrap


def available_models() -> list[str]:
    return sorted(_REGISTRY)


@register("cnn")
def classic_cnn(inputs, num_classes: int, cfg):
    """The classic Keras tutorial CNN: Conv2D 32/64/128 3x3 ReLU, each + 2x2 max-pool,
    Flatten, Dense 512 ReLU, Dropout 0.5, softmax (filters, kernel, units and dropout from cfg)."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = layers.Conv2D(filters, cfg.kernel_size, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def _check_cnn_fits(image_size: tuple[int, int], cfg) -> None:
    # Each block shrinks a side by (kernel - 1), then halves it; a side that reaches 0 cannot be built.
    side = min(image_size)
    for _ in cfg.filters:
        side = (side - (cfg.kernel_size - 1)) // 2
        if side < 1:
            raise ImgaiError(
                f"data.image_size={list(image_size)} is too small for {len(cfg.filters)} conv blocks with "
                f"kernel {cfg.kernel_size}: use larger images or fewer model.filters"
            )


def create_model(model_cfg, image_size: tuple[int, int], channels: int, num_classes: int, interpolation: str = "bilinear"):
    """Build a registered model with the resize layer in front. Not compiled."""
    import keras
    from keras import layers

    if num_classes < 2:
        raise ImgaiError(f"a classifier needs at least 2 classes, got {num_classes}")
    builder = _REGISTRY.get(model_cfg.name)
    if builder is None:
        raise ImgaiError(f"unknown model '{model_cfg.name}': choose one of {', '.join(available_models())}")
    if model_cfg.name == "cnn":
        _check_cnn_fits(image_size, model_cfg)
    inputs = keras.Input(shape=(None, None, channels), name="image")
    x = layers.Resizing(image_size[0], image_size[1], interpolation=interpolation, name="resize")(inputs)
    outputs = builder(x, num_classes, model_cfg)
    return keras.Model(inputs, outputs, name=model_cfg.name)


# --------------------------------------------------------------------------------------------
# Backbones: the contract the fine-tune stage of training relies on

BACKBONE_PREFIX = "backbone"


def backbone_layers(model) -> list:
    """The layers of ``model``'s pretrained backbone, from input to output (empty if none).

    Contract for model builders: either the backbone is one nested ``keras.Model`` layer whose
    name starts with ``"backbone"`` (its inner layers but the input are returned), or its layers are inlined
    with names starting with ``"backbone_"``.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name.startswith(BACKBONE_PREFIX):
            return [inner for inner in layer.layers if not isinstance(inner, keras.layers.InputLayer)]
    return [layer for layer in model.layers if layer.name.startswith(BACKBONE_PREFIX + "_")]


def unfreeze_backbone(model, top: int | str = "all") -> int:
    """Make the top ``top`` backbone layers (or ``"all"``) trainable; returns how many layers
    with weights became trainable. BatchNormalization layers stay frozen, as in Keras'
    fine-tuning guide, so their statistics are not wrecked by small batches."""
    import keras

    layers = backbone_layers(model)
    for layer in model.layers:  # a frozen container hides its layers' weights: open it first
        if isinstance(layer, keras.Model) and layer.name.startswith(BACKBONE_PREFIX):
            layer.trainable = True
    chosen = layers if top == "all" else layers[max(0, len(layers) - int(top)):]
    chosen_ids = {id(layer) for layer in chosen}
    unfrozen = 0
    for layer in layers:
        trainable = id(layer) in chosen_ids and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += int(trainable and bool(layer.weights))
    return unfrozen


# --------------------------------------------------------------------------------------------
# Saving and loading


def save_model(model, path: str | Path, metadata: dict[str, Any], extra_members: dict[str, str] | None = None) -> None:
    """Save ``model`` to ``path`` atomically, with imgai's metadata inside the archive.

    ``extra_members`` (name -> text) are written into the same archive, so they can never
    disagree with the weights (training stores its resume state this way).
    """
    from imgai.runs import temporary_sibling

    path = Path(path)
    tmp = temporary_sibling(path, suffix=".keras")  # Keras insists on the .keras extension
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2))
            for name, text in (extra_members or {}).items():
                archive.writestr(name, text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict[str, Any]:
    """imgai's metadata from a ``.keras`` file (empty if it was saved by plain Keras)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_MEMBER in archive.namelist():
                return json.loads(archive.read(METADATA_MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return {}


def _check_keras_file(path: Path) -> None:
    if not path.is_file():
        raise ImgaiError(f"model file '{path}' not found: pass a .keras file written by 'imgai train'")
    if not zipfile.is_zipfile(path):
        raise ImgaiError(
            f"'{path}' is not a Keras model file (.keras zip archive): pass a checkpoint such as runs/run1/best.keras"
        )
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ImgaiError(f"'{path}' is a zip file but not a Keras model (no config.json inside): pass a .keras file")


def load_model(path: str | Path):
    """Load a ``.keras`` file for inference. Returns ``(model, metadata)``.

    ``metadata`` always has ``class_names``, ``image_size`` and ``color_mode``; for files saved by
    plain Keras they are read off the model (class names then are ``class_0``, ``class_1``, ...).
    """
    path = Path(path)
    _check_keras_file(path)
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise ImgaiError(f"could not load model '{path}' ({first}): is it a complete .keras file from imgai train?") from None
    metadata = dict(read_metadata(path))
    num_classes = int(model.output_shape[-1])
    if "class_names" not in metadata or len(metadata["class_names"]) != num_classes:
        metadata["class_names"] = [f"class_{i}" for i in range(num_classes)]
    if "image_size" not in metadata:
        size = None
        for layer in model.layers:
            if layer.__class__.__name__ == "Resizing":
                size = [layer.height, layer.width]
                break
        shape = model.input_shape
        if size is None and shape[1] and shape[2]:
            size = [shape[1], shape[2]]
        metadata["image_size"] = size or [224, 224]
    if "color_mode" not in metadata:
        metadata["color_mode"] = "grayscale" if model.input_shape[-1] == 1 else "rgb"
    metadata.setdefault("interpolation", "bilinear")
    return model, metadata
