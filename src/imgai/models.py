"""Model registry, builders, and ``.keras`` files that carry their class names.

Every model is built the same way by :func:`create_model`::

    Input (any height x width, C channels, pixels 0..255)
      -> Resizing(image_size)            # inside the model, so any image size can be fed
      -> <registry entry>                # starts with its own normalisation, e.g. Rescaling(1/255)
      -> softmax over the classes

Adding an architecture is one registry entry: a function ``(inputs, num_classes, model_cfg) ->
outputs`` decorated with ``@register("name")``. Registered: ``cnn`` (the classic Keras CNN),
``sepresnet`` (a small residual separable-conv net for training from scratch) and the
keras.applications backbones in :data:`BACKBONES`, whose layers :func:`backbone_layers` finds.
Every model ends in :func:`classifier`, a float32 softmax. Because the resize and the normalisation
are layers, train, eval and predict can never preprocess differently, and the saved file works in a
plain Python with Keras alone.

Saved files are ordinary ``.keras`` archives with one extra member, ``imgai.json`` (class names,
image size, colour mode), which ``keras.saving.load_model`` ignores.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgai.errors import ImgaiError
from imgai.names import BACKBONES as BACKBONE_CLASSES
from imgai.names import MODEL_BUILDERS

_REGISTRY: dict[str, Callable[..., Any]] = MODEL_BUILDERS  # shared with imgai.names (the config reads it)


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
    return classifier(x, num_classes)


def classifier(x, num_classes: int):
    """The softmax layer every model ends in. Kept in float32 under mixed precision, so the
    probabilities and the loss do not lose precision (Keras's mixed-precision guidance)."""
    from keras import layers

    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


@register("sepresnet")
def separable_resnet(inputs, num_classes: int, cfg):
    """A small residual net of separable convolutions, after the keras-io example "Image
    classification from scratch" (an Xception-like design).

    Stem: Conv2D(widths[0], 3, stride 2) + BatchNorm + ReLU. Then one stage per width in
    widths[1:-1]: ``depth`` x (ReLU, SeparableConv2D 3x3, BatchNorm), 3x3 max-pool with stride 2,
    plus a strided 1x1 Conv2D shortcut added to it. Then SeparableConv2D(widths[-1]) + BatchNorm +
    ReLU, global pooling, an optional hidden Dense(head_units), dropout and the softmax.
    Separable convolutions cost about 1/9 of a full 3x3 convolution, so the net can be wider and
    deeper than the classic CNN at a fraction of its FLOPs.
    """
    from keras import layers

    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(cfg.widths[0], 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    shortcut = x
    for stage, width in enumerate(cfg.widths[1:-1], start=1):
        for i in range(1, cfg.depth + 1):
            x = layers.Activation("relu", name=f"stage{stage}_relu{i}")(x)
            x = layers.SeparableConv2D(
                width, 3, padding="same", use_bias=False, name=f"stage{stage}_sepconv{i}"
            )(x)
            x = layers.BatchNormalization(name=f"stage{stage}_bn{i}")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"stage{stage}_pool")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same", name=f"stage{stage}_shortcut")(shortcut)
        x = layers.Add(name=f"stage{stage}_add")([x, residual])
        shortcut = x
    x = layers.SeparableConv2D(cfg.widths[-1], 3, padding="same", use_bias=False, name="top_sepconv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.Activation("relu", name="top_relu")(x)
    return _head(x, num_classes, cfg)


def _head(x, num_classes: int, cfg):
    """Global pooling, an optional hidden Dense layer, dropout and the softmax; layers named head_*."""
    from keras import layers

    pool = layers.GlobalAveragePooling2D if cfg.pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name="head_pool")(x)
    if cfg.head_units:
        x = layers.Dense(cfg.head_units, activation="relu", name="head_dense")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="head_dropout")(x)
    return classifier(x, num_classes)


@contextlib.contextmanager
def precision_policy(precision: str = "float32"):
    """Build models under the Keras dtype policy ``precision`` (float32, mixed_float16,
    mixed_bfloat16), then restore the previous global policy.

    Layers keep the policy they were built with, and Model.compile wraps the optimizer in a
    LossScaleOptimizer for mixed_float16, so the policy is only needed while building.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def estimate_flops(model) -> int:
    """Floating-point operations (2 x multiply-adds) of one forward pass on one image, counted
    for the layers that dominate: Conv2D, SeparableConv2D, DepthwiseConv2D and Dense."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model or Sequential block
            total += estimate_flops(layer)
            continue
        kind = layer.__class__.__name__
        if kind not in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Dense"):
            continue
        try:
            in_shape, out_shape = layer.input.shape, layer.output.shape
        except (AttributeError, ValueError):
            continue
        out_pixels = 1
        for dim in out_shape[1:-1]:
            out_pixels *= int(dim or 0)
        in_channels, out_channels = int(in_shape[-1]), int(out_shape[-1])
        if kind == "Dense":
            macs = out_pixels * in_channels * out_channels
        else:
            kernel = int(layer.kernel_size[0]) * int(layer.kernel_size[1])
            if kind == "Conv2D":
                macs = (
                    out_pixels
                    * kernel
                    * in_channels
                    // max(1, int(getattr(layer, "groups", 1)))
                    * out_channels
                )
            elif kind == "DepthwiseConv2D":
                macs = out_pixels * kernel * out_channels
            else:  # separable: depthwise, then a 1x1 pointwise conv
                mid = in_channels * int(layer.depth_multiplier)
                macs = out_pixels * (kernel * mid + mid * out_channels)
        total += 2 * macs
    return total


# --------------------------------------------------------------------------------------------
# Pretrained backbones from keras.applications
#
# A backbone model is one flat functional graph (the application is built on the resized input
# tensor with ``input_tensor=``, not nested), so every backbone layer is a layer of the model
# (Grad-CAM reaches its last conv):
#
#   image -> resize -> [preprocess_*] -> backbone_<the application's layers> -> head_* -> predictions
#
# Following the backbone contract above, the application's layers are renamed with the
# ``backbone_`` prefix, so :func:`backbone_layers` and :func:`unfreeze_backbone` find them, in
# files loaded from disk too.

# registry name -> (keras.applications class, preprocessing). "own" = the application's
# include_preprocessing (Rescaling / Normalization layers); "caffe" = ResNet's RGB->BGR and
# ImageNet mean subtraction, done by a fixed, non-trainable Dense layer on the channel axis.
BACKBONES = {name: (app, "caffe" if name == "resnet50" else "own") for name, app in BACKBONE_CLASSES.items()}
IMGAI_LAYER_NAMES = ("image", "resize")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _application_layers(app) -> list:
    """The layers the application added on top of imgai's input, resize and preprocess_* layers."""
    return [
        layer
        for layer in app.layers
        if layer.__class__.__name__ != "InputLayer"
        and layer.name not in IMGAI_LAYER_NAMES
        and not layer.name.startswith("preprocess_")
    ]


def _caffe_preprocess(x, channels: int):
    """RGB [0, 255] -> BGR minus the ImageNet mean, as keras.applications.resnet.preprocess_input."""
    import numpy as np
    from keras import layers

    if channels != 3:
        return x
    dense = layers.Dense(3, dtype="float32", trainable=False, name="preprocess_caffe")
    out = dense(x)
    swap = np.eye(3, dtype="float32")[::-1]  # RGB -> BGR
    dense.set_weights([swap, -np.asarray(CAFFE_MEAN_BGR, dtype="float32")])
    return out


@contextlib.contextmanager
def _explain_download_failure(app_name: str):
    """Turn a failed ImageNet-weights download into one line naming the file and where it goes."""
    from imgai.backend import keras_cache_dir, recording_downloads

    asked: dict = {}
    try:
        with recording_downloads(asked):
            yield
    except Exception as exc:
        if not asked:
            raise
        target = Path(keras_cache_dir()) / asked["cache_subdir"] / asked["fname"]
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:160]
        raise ImgaiError(
            f"could not get the ImageNet weights of {app_name} ({reason}): download {asked['origin']} "
            f"and place it at {target}, or set model.weights=PATH_TO_FILE or model.weights=null"
        ) from None


def _load_backbone_weights(
    app, app_name: str, weights: str, image_size, channels: int, graph_layers: list
) -> None:
    """Build the application on its own with ``weights`` (ImageNet through Keras's cache, or a
    file), then copy them layer by layer into the same layers of the imgai graph."""
    if weights != "imagenet":
        if not Path(weights).expanduser().is_file():
            raise ImgaiError(
                f"backbone weights file '{weights}' not found: set model.weights=imagenet, null or an existing file"
            )
        weights = str(Path(weights).expanduser())
    elif channels != 3:
        raise ImgaiError("ImageNet weights need colour images: set data.color_mode=rgb or model.weights=null")
    kwargs = _app_kwargs(app_name)
    with warnings.catch_warnings(), _explain_download_failure(app_name):
        warnings.simplefilter("ignore")  # e.g. MobileNetV3's "weights for 224x224 will be loaded"
        try:
            source = app(
                include_top=False,
                weights=weights,
                input_shape=(image_size[0], image_size[1], channels),
                **kwargs,
            )
        except (ValueError, OSError, KeyError) as exc:
            if weights == "imagenet":
                raise
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
            raise ImgaiError(
                f"could not load backbone weights from '{weights}' ({first}): it must be a weights file of "
                f"{app_name} without its classifier top (include_top=False)"
            ) from None
    source_layers = [layer for layer in source.layers if layer.weights]
    target_layers = [layer for layer in graph_layers if layer.weights]
    shapes = lambda group: [[tuple(w.shape) for w in layer.weights] for layer in group]  # noqa: E731
    if shapes(source_layers) != shapes(target_layers):
        raise ImgaiError(f"the weights of {app_name} do not fit the backbone built for this config")
    for src, dst in zip(source_layers, target_layers):
        dst.set_weights(src.get_weights())


def _app_kwargs(app_name: str) -> dict:
    import inspect

    import keras

    app = getattr(keras.applications, app_name)
    return (
        {"include_preprocessing": True}
        if "include_preprocessing" in inspect.signature(app).parameters
        else {}
    )


def _make_backbone_builder(app_name: str, preprocessing: str):
    def build(inputs, num_classes: int, cfg):
        import keras

        app = getattr(keras.applications, app_name)
        image_size = tuple(int(d) for d in inputs.shape[1:3])
        channels = int(inputs.shape[-1])
        x = _caffe_preprocess(inputs, channels) if preprocessing == "caffe" else inputs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                backbone = app(include_top=False, weights=None, input_tensor=x, **_app_kwargs(app_name))
            except ValueError as exc:
                first = (str(exc).strip().splitlines() or ["invalid input"])[0][:200]
                raise ImgaiError(
                    f"cannot build {app_name} for images of {list(image_size)} x {channels} channels ({first})"
                ) from None
        graph_layers = _application_layers(backbone)
        if cfg.weights is not None:
            _load_backbone_weights(app, app_name, cfg.weights, image_size, channels, graph_layers)
        frozen = bool(cfg.freeze)  # resolved by the config: frozen when weights are loaded
        for layer in graph_layers:
            layer.name = f"{BACKBONE_PREFIX}_{layer.name}"  # the contract; names are saved with the model
            layer.trainable = not frozen
        return _head(backbone.output, num_classes, cfg)

    build.__doc__ = (
        f"keras.applications.{app_name} without its top, with its own preprocessing inside the model "
        f"and imgai's head (pooling, optional Dense, dropout, softmax)."
    )
    return build


for _name, (_app, _prep) in BACKBONES.items():
    register(_name)(_make_backbone_builder(_app, _prep))


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


def estimate_cnn_parameters(cfg, image_size: tuple[int, int], channels: int, num_classes: int) -> int:
    """Parameters of the classic CNN, counted from its settings without building it (building a
    model that does not fit is what runs out of memory)."""
    height, width = image_size
    params, previous = 0, channels
    for filters in cfg.filters:
        params += (cfg.kernel_size * cfg.kernel_size * previous + 1) * filters
        height, width = (height - cfg.kernel_size + 1) // 2, (width - cfg.kernel_size + 1) // 2
        previous = filters
    flat = max(height, 0) * max(width, 0) * previous
    return params + (flat + 1) * cfg.dense_units + (cfg.dense_units + 1) * num_classes


def check_fits_memory(
    model_cfg, image_size: tuple[int, int], channels: int, num_classes: int, batch_size: int, available: int
) -> None:
    """Refuse settings that cannot fit in ``available`` bytes of memory, before anything is built.

    Estimate: 16 bytes per parameter (weights, gradients and two optimizer moments, float32) for
    the classic CNN (counted exactly), plus a training batch's activations: the float32 input and
    the first layer's output, kept for the backward pass, for every model."""
    if not available:
        return
    height, width = image_size
    first = model_cfg.filters[0] if model_cfg.name == "cnn" else 64
    activations = batch_size * height * width * (channels + 2 * first) * 4 * 2
    params = (
        estimate_cnn_parameters(model_cfg, image_size, channels, num_classes)
        if model_cfg.name == "cnn"
        else 0
    )
    need = params * 16 + activations
    if need > available:
        what = f"{params:,} parameters x 16 bytes + " if params else ""
        raise ImgaiError(
            f"these settings need about {need / 2**30:,.1f} GiB ({what}{activations / 2**30:,.1f} GiB of activations "
            f"for a batch of {batch_size} at {height}x{width}), more than the {available / 2**30:,.1f} GiB of memory "
            "available: lower data.batch_size, data.image_size, model.dense_units or model.filters"
        )


def create_model(
    model_cfg, image_size: tuple[int, int], channels: int, num_classes: int, interpolation: str = "bilinear"
):
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
    with names starting with ``"backbone_"``. An inlined layer may itself be a small model (ConvNeXt's
    stem is a Sequential); a nested model named ``backbone_*`` is therefore one inlined layer.
    """
    import keras

    for layer in model.layers:
        if _is_nested_backbone(layer):
            return [inner for inner in layer.layers if not isinstance(inner, keras.layers.InputLayer)]
    return [layer for layer in model.layers if layer.name.startswith(BACKBONE_PREFIX + "_")]


def _is_nested_backbone(layer) -> bool:
    import keras

    return (
        isinstance(layer, keras.Model)
        and layer.name.startswith(BACKBONE_PREFIX)
        and not layer.name.startswith(BACKBONE_PREFIX + "_")
    )


def unfreeze_backbone(model, top: int | str = "all") -> int:
    """Make the top ``top`` backbone layers (or ``"all"``) trainable; returns how many layers
    with weights became trainable. BatchNormalization layers stay frozen, as in Keras'
    fine-tuning guide, so their statistics are not wrecked by small batches."""
    import keras

    layers = backbone_layers(model)
    for layer in model.layers:  # a frozen container hides its layers' weights: open it first
        if _is_nested_backbone(layer):
            layer.trainable = True
    chosen = layers if top == "all" else layers[max(0, len(layers) - int(top)) :]
    chosen_ids = {id(layer) for layer in chosen}
    unfrozen = 0
    for layer in layers:
        trainable = id(layer) in chosen_ids and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += int(trainable and bool(layer.weights))
    return unfrozen


KERAS_BATCHNORM_MOMENTUM = 0.99


def batchnorm_momentum_for(steps_per_epoch: int) -> float:
    """Keras's 0.99, or lower for short epochs: the momentum whose moving statistics keep under 1 %
    of their starting point after one epoch (0.01 ** (1 / steps)). With 0.99 that takes 459 steps; a
    data set of 245 images in batches of 32 (8 steps per epoch) would need 57 epochs, and meanwhile
    inference normalises with statistics of weights long gone."""
    return min(KERAS_BATCHNORM_MOMENTUM, 0.01 ** (1.0 / max(1, steps_per_epoch)))


def set_batchnorm_momentum(model, momentum: float, pretrained: bool) -> int:
    """Set the momentum of ``model``'s BatchNormalization layers (a pretrained backbone's keep their
    own: their statistics start settled); returns how many changed. Set before training starts: the
    compiled training step reads it."""
    import keras

    in_backbone = {id(layer) for layer in backbone_layers(model)} if pretrained else set()

    def walk(layers):
        for layer in layers:
            if isinstance(layer, keras.Model):
                if id(layer) not in in_backbone and not (pretrained and _is_nested_backbone(layer)):
                    yield from walk(layer.layers)
            elif isinstance(layer, keras.layers.BatchNormalization) and id(layer) not in in_backbone:
                yield layer

    changed = 0
    for layer in walk(model.layers):
        layer.momentum = float(momentum)
        changed += 1
    return changed
