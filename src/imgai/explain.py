"""Explanations: Grad-CAM heat maps that show which part of an image drove a prediction.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional feature map by the
mean gradient of the class score with respect to it, sums the channels, keeps the positive part,
and stretches the result over the image.

It works on any model in the registry without knowing its layers by name:

* :func:`find_target_layer` walks the functional graph in order, recursing into nested
  sub-models (e.g. a pretrained backbone used as one layer), and picks the last layer whose
  output is a 4-D (batch, height, width, channels) feature map, skipping a trailing pooling or
  dropout layer so the map keeps its resolution; :func:`choose_layer` passes over a coarse last
  map (a few cells a side, e.g. a 32-px model's) for a finer earlier one, and says so;
* :func:`grad_cam` re-runs the model's graph with that layer intercepted, so its activation can be
  recorded, and scores the class on the logits (the softmax is bypassed, so a confident
  prediction does not give vanishing gradients).

The gradient itself is the only backend-specific step, in
:func:`imgai.backend.activation_gradients`: TensorFlow and JAX are supported, PyTorch gets a
one-line error.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgai.errors import ImgaiError

if TYPE_CHECKING:
    from imgai.modelfile import ModelInfo

# Layers after which the feature map holds no new information, only less resolution.
_PASS_THROUGH = ("Pooling", "Dropout", "GaussianNoise", "ActivityRegularization")


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _sub_layers(model) -> list:
    return list(model.layers)


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):  # unbuilt, or shared with several outputs
        return None


def _is_feature_map(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.InputLayer) or _output_rank(layer) != 4:
        return False
    return not any(part in layer.__class__.__name__ for part in _PASS_THROUGH)


def _candidates(model, prefix: tuple = (), any_4d: bool = False) -> list[tuple]:
    """Paths (outer layer, ..., layer) of every feature-map layer, in graph order; with
    ``any_4d`` pooling and dropout layers count too."""
    found: list[tuple] = []
    for layer in _sub_layers(model):
        path = prefix + (layer,)
        if _is_model(layer):
            found.extend(_candidates(layer, path, any_4d))
        if _is_feature_map(layer) or (any_4d and _output_rank(layer) == 4 and not _is_input(layer)):
            found.append(path)
    return found


def _is_input(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.InputLayer)


def find_target_layer(model, name: str | None = None) -> tuple:
    """The path to the layer Grad-CAM reads: ``name`` if given, else the last feature map."""
    candidates = _candidates(model)
    if name is not None:
        named = [path for path in _candidates(model, any_4d=True) if path[-1].name == name]
        if not named:
            raise ImgaiError(
                f"model has no layer '{name}' with a 4-D feature map: choose one of "
                + ", ".join(p[-1].name for p in candidates[-8:])
            )
        return named[-1]
    if not candidates:
        raise ImgaiError(
            "the model has no convolutional feature map (no layer with a 4-D output), so Grad-CAM cannot explain it"
        )
    return candidates[-1]


# A map with at most this many cells on a side is coarse: each cell covers a quarter or more of
# the image, so the heat can only say "this side", not "this object" (a 32-px classic CNN reads 4x4).
COARSE_SIDE = 4
FINE_SIDE = 2 * COARSE_SIDE  # what an earlier layer must have to be worth reading instead
# Input preprocessing has a 4-D output at full resolution but no features: never a fallback.
# Nor are paddings and crops: the same map as the layer before, with a border.
_NOT_A_FALLBACK = (
    "Resizing",
    "Rescaling",
    "Normalization",
    "CenterCrop",
    "Random",
    "ZeroPadding",
    "Cropping",
)


def _map_size(path: tuple) -> tuple[int, int] | None:
    try:
        height, width = path[-1].output.shape[1:3]
    except (AttributeError, ValueError, RuntimeError, TypeError):
        return None
    return (int(height), int(width)) if height and width else None


def _describe_layers(candidates: list[tuple]) -> str:
    shown = []
    for path in candidates[-6:]:
        size = _map_size(path)
        shown.append(path[-1].name + (f" {size[0]}x{size[1]}" if size else ""))
    return ", ".join(shown)


def choose_layer(model, name: str | None = None) -> tuple[tuple, str | None]:
    """The layer Grad-CAM reads (as :func:`find_target_layer`) and a note for people, or None.

    When no ``name`` is given and the last feature map is coarse (at most :data:`COARSE_SIDE`
    cells on a side), the last earlier feature map with at least :data:`FINE_SIDE` cells is read
    instead, and the note says so; a coarse map that is asked for, or that has no finer
    alternative, is read with a note saying that it is coarse and how to choose another."""
    path = find_target_layer(model, name)
    size = _map_size(path)
    if size is None or min(size) > COARSE_SIDE:
        return path, None
    candidates = [
        c for c in _candidates(model) if not any(p in c[-1].__class__.__name__ for p in _NOT_A_FALLBACK)
    ]
    finer = [c for c in candidates[: candidates.index(path)] if (s := _map_size(c)) and min(s) >= FINE_SIDE]
    coarse = f"layer '{path[-1].name}' gives only a {size[0]}x{size[1]} map, too coarse to point at an object"
    choose = f"layers to choose from with --layer NAME (or explain.layer): {_describe_layers(candidates)}"
    if name is None and finer:
        chosen = finer[-1]
        h, w = _map_size(chosen)
        return chosen, f"{coarse}; reading the finer '{chosen[-1].name}' ({h}x{w}) instead. The {choose}"
    return path, f"{coarse}: the heat shows only which part of the image mattered. The {choose}"


def _logit_layer(model):
    """The layer that produces the model's output, if it ends in a softmax we can bypass."""
    import keras

    node_layer = (
        model.outputs[0]._keras_history.operation if hasattr(model.outputs[0], "_keras_history") else None
    )
    if node_layer is not None and getattr(node_layer, "activation", None) is keras.activations.softmax:
        return node_layer
    return None


def _run_graph(model, x, path: tuple, record: dict, logit_layer=None):
    """Call ``model`` on ``x`` with ``path[0]`` intercepted: the last element of the path has its
    output stored in ``record['activation']`` (after ``record['hook']`` sees it)."""
    import keras

    target = path[0] if path else None

    def intercept(op):
        if op is target and len(path) > 1:
            return lambda *args, **kwargs: _call_nested(op, args, kwargs, path[1:], record)
        if op is target:

            def capture(*args, **kwargs):
                out = op(*args, **kwargs)
                out = record["hook"](out)
                record["activation"] = out
                return out

            return capture
        if op is logit_layer:

            def linear(*args, **kwargs):
                saved = op.activation
                op.activation = keras.activations.linear
                try:
                    return op(*args, **kwargs)
                finally:
                    op.activation = saved

            return linear
        return op

    functional = getattr(model, "_functional", None) or model  # Sequential keeps one inside
    if not hasattr(functional, "_run_through_graph"):
        raise ImgaiError(
            f"cannot explain a '{model.__class__.__name__}' model: "
            "Grad-CAM needs a functional or sequential Keras model"
        )
    return functional._run_through_graph([x], operation_fn=intercept)


def _call_nested(sub_model, args, kwargs, path, record):
    functional = getattr(sub_model, "_functional", None) or sub_model
    if not hasattr(functional, "_run_through_graph"):
        raise ImgaiError(
            f"cannot look inside sub-model '{sub_model.name}': pass `layer` with one of the outer layers"
        )
    out = _run_graph(sub_model, args[0], path, record)
    return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out


def _unwrap(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def _scorer(model, path: tuple, class_indices: np.ndarray | None):
    """``forward(x, hook) -> (score, activation, probabilities)`` for
    :func:`imgai.backend.activation_gradients`: the summed logit of each image's class (given, or
    the predicted one), with ``hook`` applied to the activation of ``path[-1]``."""
    import keras

    logit_layer = _logit_layer(model)
    ops = keras.ops

    def forward(x, hook):
        record = {"hook": hook}
        logits = _unwrap(_run_graph(model, x, path, record, logit_layer))
        probabilities = ops.softmax(logits, axis=-1) if logit_layer is not None else logits
        chosen = (
            ops.argmax(probabilities, axis=-1)
            if class_indices is None
            else ops.convert_to_tensor(class_indices, dtype="int32")
        )
        score = ops.sum(ops.take_along_axis(logits, ops.expand_dims(ops.cast(chosen, "int32"), 1), axis=1))
        return score, record["activation"], probabilities

    return forward


@dataclass
class Explanation:
    heatmaps: np.ndarray  # (N, h, w) in [0, 1], at the feature map's resolution
    probabilities: np.ndarray  # (N, classes)
    class_indices: np.ndarray  # (N,) the class each heat map explains
    layer: str  # name of the layer read
    geometry: CellGeometry | None = None  # where the cells sit in the model-sized image
    note: str | None = None  # for people: the map is coarse, or a finer layer was read instead


def grad_cam(model, images: np.ndarray, class_indices=None, layer: str | None = None) -> Explanation:
    """Grad-CAM for a batch of images (N, H, W, C) with pixel values 0..255, at the model's image
    size (as :func:`imgai.data.decode_image` gives them). ``class_indices``: one per image, or
    None for each image's predicted class. ``layer``: the name of the layer to read, or None for
    :func:`choose_layer`'s pick (``result.note`` then says when the last map was too coarse)."""
    from imgai.backend import activation_gradients

    images = np.asarray(images, dtype=np.float32)
    path, note = choose_layer(model, layer)
    indices = (
        None
        if class_indices is None
        else np.broadcast_to(np.asarray(class_indices, dtype=np.int32), (len(images),))
    )
    activation, gradients, probabilities = activation_gradients(_scorer(model, path, indices), images)
    if gradients is None:
        raise ImgaiError(
            f"the class score does not depend on layer '{path[-1].name}': pass `layer` with another layer"
        )
    weights = gradients.mean(axis=(1, 2), keepdims=True)  # one weight per channel
    cams = np.maximum((activation * weights).sum(axis=-1), 0.0)
    peak = cams.max(axis=(1, 2), keepdims=True)
    cams = np.divide(cams, peak, out=np.zeros_like(cams), where=peak > 0)
    chosen = probabilities.argmax(axis=1) if indices is None else np.asarray(indices)
    geometry = cell_geometry(path, cams.shape[1:3], images.shape[1:3])
    return Explanation(
        cams.astype(np.float32), probabilities, chosen.astype(np.int64), path[-1].name, geometry, note
    )


# --------------------------------------------------------------------------------------------
# Where each feature-map cell looks in the image
#
# Stretching a feature map over the image is only right for 'same' padding: with 'valid'
# convolutions (the classic CNN) the cells' centres sit further inside, and a plain stretch moves
# the heat outwards by up to a tenth of the image. So the cell -> pixel map is composed from the
# strides, kernels and paddings on one path from the input to the target layer.


@dataclass
class CellGeometry:
    """Cell ``i`` of the feature map is centred on input pixel ``scale * i + offset`` (per axis)."""

    scale: tuple[float, float]
    offset: tuple[float, float]


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def _layer_transform(layer, axis: int) -> tuple[float, float] | None:
    """(stride, offset) with centre_in = stride * centre_out + offset for one layer along ``axis``
    (0 = height, 1 = width); identity for layers that keep positions; None when unknown."""
    name = layer.__class__.__name__
    if name == "ZeroPadding2D":
        return 1.0, -float(layer.padding[axis][0])
    if name == "Cropping2D":
        return 1.0, float(layer.cropping[axis][0])
    kernel = getattr(layer, "pool_size", None) or getattr(layer, "kernel_size", None)
    strides = getattr(layer, "strides", None)
    if kernel is None or strides is None or "Transpose" in name or "UpSampling" in name:
        return None if ("Transpose" in name or "UpSampling" in name) else (1.0, 0.0)
    k, stride = _pair(kernel)[axis], _pair(strides)[axis]
    dilation = _pair(getattr(layer, "dilation_rate", 1))[axis]
    k = (k - 1) * dilation + 1
    offset = (k - 1) / 2
    if getattr(layer, "padding", "valid") == "same":
        size = layer.input.shape[1 + axis]
        if size is None:
            return None
        pad_total = max((-(-size // stride) - 1) * stride + k - size, 0)
        offset -= pad_total // 2
    return float(stride), float(offset)


def _inbound_layer(layer):
    node = layer._inbound_nodes[0]
    tensors = node.input_tensors
    return tensors[0]._keras_history.operation if tensors else None


def _walk_back(layer, chain: list) -> bool:
    """Append ``layer`` and the layers before it, up to its graph's input, following first
    inputs and going through nested models; False when the path is ambiguous."""
    import keras

    while layer is not None and not isinstance(layer, keras.layers.InputLayer):
        if len(layer._inbound_nodes) != 1:
            return False  # a shared layer: which call is meant is ambiguous
        if _is_model(layer):
            if not _walk_back(layer.outputs[0]._keras_history.operation, chain):
                return False
        else:
            chain.append(layer)
        layer = _inbound_layer(layer)
    return True


def _layers_to_input(path: tuple) -> list | None:
    """Layers from the target back to the model's input; None when that cannot be told."""
    chain: list = []
    if not _walk_back(path[-1], chain):
        return None
    for container in reversed(path[:-1]):  # then, in each enclosing graph, what fed the sub-model
        if len(container._inbound_nodes) != 1 or not _walk_back(_inbound_layer(container), chain):
            return None
    return chain


def cell_geometry(path: tuple, feature_shape: tuple[int, int], image_size: tuple[int, int]) -> CellGeometry:
    """Where the cells of the target layer's map sit in the (model-sized) input image."""
    chain = None
    try:
        chain = _layers_to_input(path)
    except (AttributeError, IndexError, ValueError):
        chain = None
    scales, offsets = [], []
    for axis in (0, 1):
        stretch = image_size[axis] / feature_shape[axis]
        scale, offset = 1.0, 0.0
        for layer in chain or []:
            try:
                step = _layer_transform(layer, axis)
            except (AttributeError, IndexError, ValueError, TypeError):
                step = None
            if step is None:
                chain = None
                break
            stride, shift = step
            scale, offset = scale * stride, offset * stride + shift
        if chain is None:  # unknown geometry: stretch the map over the image, centre to centre
            scale, offset = stretch, (stretch - 1) / 2
        scales.append(scale)
        offsets.append(offset)
    return CellGeometry(tuple(scales), tuple(offsets))


def _cubic_weights(cells: np.ndarray, count: int) -> np.ndarray:
    """(len(cells), count) weights of Keys' cubic convolution (a = -0.5, as in bicubic image
    resizing) that read a row of ``count`` cells at the fractional positions ``cells``; the
    edge cells are repeated past the ends."""
    base = np.floor(cells).astype(int)
    weights = np.zeros((len(cells), count))
    rows = np.arange(len(cells))
    for k in (-1, 0, 1, 2):
        distance = np.abs(cells - (base + k))
        w = np.where(
            distance <= 1,
            1.5 * distance**3 - 2.5 * distance**2 + 1,
            np.where(distance < 2, -0.5 * distance**3 + 2.5 * distance**2 - 4 * distance + 2, 0.0),
        )
        np.add.at(weights, (rows, np.clip(base + k, 0, count - 1)), w)
    return weights


def place_heatmap(
    heatmap: np.ndarray, geometry: CellGeometry, model_size: tuple[int, int], out_size: tuple[int, int]
) -> np.ndarray:
    """The cell heat map resampled onto an ``out_size`` image whose content is the
    ``model_size`` image the model saw: each cell's value sits on the pixel its centre maps to
    (``geometry``), smoothly in between (bicubic: bilinear leaves creases and star-shaped
    strips across a coarse map), held past the outermost cell centres, and kept in [0, 1]."""
    axes = []
    for axis in (0, 1):
        pixels = np.arange(out_size[axis], dtype=np.float64)
        model_pixels = (pixels + 0.5) * model_size[axis] / out_size[axis] - 0.5
        cells = (model_pixels - geometry.offset[axis]) / geometry.scale[axis]
        cells = np.clip(cells, 0, heatmap.shape[axis] - 1)
        axes.append(_cubic_weights(cells, heatmap.shape[axis]))
    rows, cols = axes
    return np.clip(rows @ heatmap.astype(np.float64) @ cols.T, 0.0, 1.0).astype(np.float32)


DISPLAY_SIDE = 480  # a photo smaller than this is shown enlarged (whole multiples)
HEAT_COLORMAP = "turbo"  # blue (none) to red (most): the scale of the heat-only panel and the overlay
HEAT_FLOOR = 0.2  # below this share of the peak a region is left uncoloured in the overlay


def overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6, floor: float = HEAT_FLOOR
) -> np.ndarray:
    """The heat map (already at the image's size) coloured and blended on the image, each pixel
    as strongly as it is hot: below ``floor`` the photo is left as it is (so a blue object is not
    mistaken for a cold region), at the peak the colour covers ``alpha`` of it."""
    import matplotlib

    heat = np.clip(heatmap, 0, 1)
    rgb = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    colours = matplotlib.colormaps[HEAT_COLORMAP](heat)[..., :3] * 255
    weight = (alpha * np.clip((heat - floor) / (1 - floor), 0, 1))[..., None]
    return np.clip(rgb * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)


def explain_file(
    model,
    info: ModelInfo,
    image_path: str | Path,
    output: str | Path,
    class_name: str | None = None,
    layer: str | None = None,
    max_side: int = 640,
) -> dict:
    """Explain one image file: write a PNG (the photo, and the photo with the heat map) to
    ``output``; return what was predicted and explained."""

    from imgai import plots
    from imgai.data import decode_for_display, decode_image, describe_decode_error
    from imgai.text import printable

    class_names = list(info.class_names)
    spec = info.decode_spec
    if class_name is not None and class_name not in class_names:
        raise ImgaiError(f"unknown class '{class_name}': the model's classes are {', '.join(class_names)}")
    try:
        pixels = decode_image(image_path, spec)
        # The picture shown comes from the same decoder (EXIF orientation, 16-bit, pixel cap),
        # already scaled to max_side, so a huge or oddly shaped file costs no more than a photo.
        shown = decode_for_display(image_path, max_side, spec.max_pixels)
    except Exception as exc:
        raise ImgaiError(f"cannot read image '{image_path}': {describe_decode_error(exc)}") from None
    wanted = None if class_name is None else class_names.index(class_name)
    result = grad_cam(model, pixels[None], wanted, layer)
    # A small photo is enlarged pixel for pixel, so the heat over it is drawn smoothly at the
    # size it is shown (matplotlib would enlarge a small heat map into blocks).
    repeat = max(1, -(-DISPLAY_SIDE // max(shown.shape[:2])))
    shown = np.repeat(np.repeat(shown, repeat, axis=0), repeat, axis=1)
    heat = place_heatmap(result.heatmaps[0], result.geometry, pixels.shape[:2], shown.shape[:2])
    probabilities = result.probabilities[0]
    predicted = int(probabilities.argmax())
    explained = int(result.class_indices[0])

    # A 1x10000 strip would otherwise ask matplotlib for a figure thousands of inches tall.
    aspect = min(max(shown.shape[0] / shown.shape[1], 0.25), 4.0)
    fig, axes = plots.new_figure(1, 3, figsize=(15, 4.6 * aspect + 1.5), layout="constrained")
    axes[0].imshow(shown)
    axes[0].set_title(printable(Path(image_path).name))
    axes[1].imshow(overlay(shown, heat))
    # Outlines at half and 80 % of the peak stay visible where the colour matches the photo's own.
    if min(heat.shape) >= 2 and heat.max() - heat.min() > 0.05:  # (a 1-pixel strip has no outline)
        axes[1].contour(heat, levels=[0.5, 0.8], colors="white", linewidths=[0.8, 1.6], alpha=0.9)
    explained_name = printable(class_names[explained])
    axes[1].set_title(
        f"Grad-CAM for '{explained_name}' ({plots.percent(probabilities[explained])})\n"
        f"coloured above {HEAT_FLOOR:.0%} of the peak, lines at 50% and 80%",
        fontsize=11,
    )
    heat_image = axes[2].imshow(heat, cmap=HEAT_COLORMAP, vmin=0, vmax=1)
    cells = result.heatmaps.shape[1:3]
    axes[2].set_title(f"heat alone (layer {printable(result.layer)}, {cells[0]}x{cells[1]} cells)")
    # Inset, so the scale is as tall as the picture beside it, whatever the photo's shape.
    bar = fig.colorbar(heat_image, cax=axes[2].inset_axes([1.03, 0.0, 0.045, 1.0]))
    bar.set_label("share of the peak heat")
    for ax in axes:
        ax.axis("off")
    title = f"predicted: {printable(class_names[predicted])} {plots.percent(probabilities[predicted])}"
    if result.note:
        title += "\n" + textwrap.fill(f"Note: {result.note}", 150)
    fig.suptitle(title, fontsize=11)
    plots.save_figure(fig, output)
    return {
        "image": str(image_path),
        "output": str(output),
        "predicted": class_names[predicted],
        "probability": float(probabilities[predicted]),
        "explained": class_names[explained],
        "explained_probability": float(probabilities[explained]),
        "layer": result.layer,
        "note": result.note,
    }
