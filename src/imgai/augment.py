"""Augmentation: random changes to training batches, as a compiled step of their own.

The ``augment`` config section maps onto Keras 3 preprocessing layers (RandomFlip, RandomRotation,
RandomZoom, RandomTranslation, RandomShear, RandomContrast, RandomBrightness, RandomSaturation,
RandomHue, RandomCrop, RandAugment, RandomErasing, MixUp, CutMix). They are applied to each
``(images, one-hot labels)`` training batch *outside* the model, for two reasons:

* the saved model must not carry training-only layers, and
* in Keras 3.15 RandomRotation / RandomZoom / RandomTranslation / RandomCrop / RandomShear set
  ``supports_jit = False``, so a model containing one of them is trained without XLA, many times
  slower per epoch on a GPU (docs/performance.md, "Augmentation"). On their own the same layers
  compile fine.

So :class:`Augmenter` runs the layers as one pure function of (seeds, images, labels), compiled by
:func:`imgai.backend.compile_pure` (``jax.jit`` on JAX, ``tf.function`` on TensorFlow, eager on
PyTorch); it needs no TensorFlow on the JAX backend. The layers' random state is not carried
from batch to batch: the seeds of batch ``i`` of epoch ``e`` are derived from ``(seed, e, i)``,
so every epoch sees new random changes, a run is reproducible from its seed, and a resumed run
continues with the same changes it would have had without the interruption.

:func:`augment_batches` is the hook where batches are produced: it wraps any
``keras.utils.PyDataset`` of ``(x, y)`` batches and returns it unchanged when nothing is switched on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgai.data import DecodeSpec
from imgai.errors import ImgaiError

VALUE_RANGE = (0.0, 255.0)  # batches hold float pixels in [0, 255]


def build_layers(aug, spec: DecodeSpec, seed: int) -> list:
    """The Keras layers for an ``augment`` config section, in the order they are applied: geometry
    first, then colour, then erasing, then the label-mixing layers last.

    Every layer computes in float32 whatever the global precision policy is, and gets its own
    seed, derived from ``seed``.
    """
    from keras import layers

    image_size, channels = spec.image_size, spec.channels
    seeds = iter(range(seed * 101 + 1, seed * 101 + 100))
    common = {"dtype": "float32"}
    out: list = []
    if aug.crop < 1.0:
        height = max(1, int(round(image_size[0] * aug.crop)))
        width = max(1, int(round(image_size[1] * aug.crop)))
        out.append(layers.RandomCrop(height, width, seed=next(seeds), name="crop", **common))
    if aug.flip != "none":
        out.append(layers.RandomFlip(aug.flip, seed=next(seeds), name="flip", **common))
    geometry = {"fill_mode": aug.fill_mode, **common}
    if aug.rotation:
        out.append(layers.RandomRotation(aug.rotation, seed=next(seeds), name="rotation", **geometry))
    if aug.zoom:
        out.append(layers.RandomZoom(aug.zoom, seed=next(seeds), name="zoom", **geometry))
    if aug.translation:
        out.append(
            layers.RandomTranslation(
                aug.translation, aug.translation, seed=next(seeds), name="translation", **geometry
            )
        )
    if aug.shear:
        out.append(layers.RandomShear(aug.shear, aug.shear, seed=next(seeds), name="shear", **geometry))
    if aug.contrast:
        out.append(
            layers.RandomContrast(
                aug.contrast, value_range=VALUE_RANGE, seed=next(seeds), name="contrast", **common
            )
        )
    if aug.brightness:
        out.append(
            layers.RandomBrightness(
                aug.brightness, value_range=VALUE_RANGE, seed=next(seeds), name="brightness", **common
            )
        )
    colour_only = [name for name in ("saturation", "hue") if getattr(aug, name)]
    if colour_only and channels != 3:
        raise ImgaiError(f"augment.{colour_only[0]} needs colour images: set it to 0 or data.color_mode=rgb")
    if aug.saturation:
        out.append(
            layers.RandomSaturation(
                aug.saturation, value_range=VALUE_RANGE, seed=next(seeds), name="saturation", **common
            )
        )
    if aug.hue:
        out.append(layers.RandomHue(aug.hue, value_range=VALUE_RANGE, seed=next(seeds), name="hue", **common))
    if aug.randaugment:
        if channels != 3:
            raise ImgaiError("augment.randaugment needs colour images: set it to 0 or data.color_mode=rgb")
        out.append(
            layers.RandAugment(
                value_range=VALUE_RANGE,
                num_ops=aug.randaugment,
                factor=aug.randaugment_magnitude,
                seed=next(seeds),
                name="randaugment",
                **common,
            )
        )
    if aug.erasing:
        out.append(
            layers.RandomErasing(
                factor=aug.erasing,
                scale=tuple(aug.erasing_scale),
                value_range=VALUE_RANGE,
                seed=next(seeds),
                name="erasing",
                **common,
            )
        )
    if aug.mixup:
        out.append(layers.MixUp(alpha=aug.mixup, seed=next(seeds), name="mixup", **common))
    if aug.cutmix:
        out.append(layers.CutMix(factor=aug.cutmix, seed=next(seeds), name="cutmix", **common))
    return out


def batch_seed(seed: int, epoch: int, index: int, count: int) -> np.ndarray:
    """``count`` independent 31-bit seeds for batch ``index`` of ``epoch``, from ``seed`` alone."""
    words = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(count, dtype=np.uint32)
    return (words >> 1).astype(np.int64)  # 31 bits: valid for every backend's seed dtype


class Augmenter:
    """Applies the augmentation layers to ``(images, labels)`` batches in one compiled step.

    ``augmenter(x, y, epoch, index)`` returns numpy arrays: float32 images (smaller when
    ``augment.crop`` < 1; the model's resize layer scales them back) and float32 labels (mixed
    by MixUp / CutMix, one-hot otherwise).
    """

    def __init__(self, aug, spec: DecodeSpec, seed: int):
        import keras

        from imgai.backend import compiles_random_crop

        self.seed = seed
        self.layers = build_layers(aug, spec, seed)
        # RandomCrop comes first; where it cannot be compiled it runs eagerly before the compiled
        # step (it is cheap: one slice per batch).
        crop_first = bool(self.layers) and self.layers[0].name == "crop"
        eager = 1 if crop_first and not compiles_random_crop() else 0
        self.eager_layers, self.compiled_layers = self.layers[:eager], self.layers[eager:]
        # Build every layer once, eagerly, so their variables exist before compiling.
        probe = np.zeros((2, *spec.image_size, spec.channels), dtype=np.float32)
        self._apply(self.layers, probe, np.eye(2, dtype=np.float32))
        self.state = [v for layer in self.layers for v in layer.variables]  # the seed generators
        self._dtypes = [keras.backend.standardize_dtype(v.dtype) for v in self.state]
        self._step = self._compile()

    def __bool__(self) -> bool:
        return bool(self.layers)

    @staticmethod
    def _apply(layers, images, labels):
        data = {"images": images, "labels": labels}
        for layer in layers:
            data = layer(data, training=True)
        return data["images"], data["labels"]

    def _stateless(self, layers, state_values, images, labels):
        import keras

        with keras.StatelessScope(state_mapping=list(zip(self.state, state_values))):
            return self._apply(layers, images, labels)

    def _compile(self):
        from imgai.backend import compile_pure

        def compiled_part(state_values, images, labels):
            return self._stateless(self.compiled_layers, state_values, images, labels)

        compiled_part = compile_pure(compiled_part)

        def step(state_values, images, labels):
            if self.eager_layers:
                images, labels = self._stateless(self.eager_layers, state_values, images, labels)
            return compiled_part(state_values, images, labels)

        return step

    def _state_values(self, epoch: int, index: int) -> list:
        import keras

        seeds = batch_seed(self.seed, epoch, index, len(self.state))
        # A SeedGenerator's state is [seed, counter]; a fresh [seed, 0] per batch makes the draws of
        # batch (epoch, index) independent of what ran before.
        return [
            keras.ops.convert_to_tensor(np.array([s, 0]), dtype=dtype)
            for s, dtype in zip(seeds, self._dtypes)
        ]

    def __call__(self, images, labels, epoch: int = 0, index: int = 0):
        import keras

        if not self.layers:
            return images, labels
        # Sources may hand out uint8 pixels; the layers work on float32 in [0, 255].
        x, y = self._step(
            self._state_values(epoch, index),
            np.asarray(images, dtype=np.float32),
            np.asarray(labels, dtype=np.float32),
        )
        return keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)


def _make_augmented_batches():
    import keras

    class AugmentedBatches(keras.utils.PyDataset):
        """Wraps :class:`imgai.batches.ImageBatches` and augments each batch it hands out.

        The epoch is the source's (its order and these random changes always agree): read it
        from the source, set it through the source, so a resumed run sees the same random
        changes an uninterrupted run would have seen.
        """

        def __init__(self, source, augmenter: Augmenter):
            # Same worker settings as the source, but threads only: a compiled step cannot be forked.
            super().__init__(
                workers=getattr(source, "workers", 1) or 1,
                use_multiprocessing=False,
                max_queue_size=getattr(source, "max_queue_size", 10),
            )
            self.source = source
            self.augmenter = augmenter

        @property
        def epoch(self) -> int:
            return self.source.epoch

        def __len__(self) -> int:
            return len(self.source)

        def __getitem__(self, index: int):
            x, y = self.source[index][:2]
            return self.augmenter(x, y, self.epoch, index)

        def set_epoch(self, epoch: int) -> None:
            """Serve epoch ``epoch`` (counted from 0): its order and its random changes."""
            self.source.set_epoch(epoch)

        def on_epoch_end(self) -> None:
            self.source.on_epoch_end()

    return AugmentedBatches


def augment_batches(source, aug, spec: DecodeSpec, seed: int):
    """``source`` (:class:`imgai.batches.ImageBatches`) with augmentation applied to every batch,
    at the source's epoch, or ``source`` itself when ``aug`` is off."""
    if not aug.is_active():
        return source
    return _make_augmented_batches()(source, Augmenter(aug, spec, seed))


def describe(aug) -> str:
    """One line naming the active augmentations, for the training log."""
    if not aug.is_active():
        return "none"
    from imgai.config import AugmentConfig

    off = AugmentConfig()
    parts = []
    for name in AugmentConfig.model_fields:
        value = getattr(aug, name)
        if value != getattr(off, name):
            parts.append(f"{name}={list(value) if isinstance(value, tuple) else value}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Preview


def _mix_caption(mix: np.ndarray, labels: np.ndarray, class_names: list[str]) -> str:
    """What one augmented image is made of and the label it trains with. ``mix`` is the image's
    row of the mixing matrix (its share of each picked image; MixUp / CutMix blend two), and
    ``labels`` the class of each picked image."""
    from imgai.plots import percent

    sources = [int(j) for j in np.argsort(mix)[::-1] if mix[j] > 1e-4][:2]
    if len(sources) < 2:  # not mixed (or mixed with itself)
        return class_names[labels[sources[0]]]
    first, second = (class_names[labels[j]] for j in sources)
    shares = f"{percent(mix[sources[0]])} + {percent(mix[sources[1]])}"
    if first == second:  # the training label is the class alone, however the images were blended
        return f"{first} 100%\n(two {first} images, {shares})"
    return f"{first} {percent(mix[sources[0]])}, {second} {percent(mix[sources[1]])}"


def preview(config, output: str | Path, count: int = 16, log=print) -> Path:
    """Write a PNG of ``count`` training images, each beside its augmented version.

    The images are a seeded random pick from the training split, decoded at ``data.image_size``
    as the model gets them. They are augmented by the training augmentation (same layers,
    settings and seeds as epoch 1's first batch) as one batch of their own, so the picture shows
    the kind and strength of the changes, not the exact images of a training batch. An image
    blended by MixUp or CutMix is captioned with the label it trains with and, when both sources
    are of one class, their shares. With no augmentation configured the images are shown alone.
    """
    import textwrap

    from matplotlib.figure import Figure

    from imgai.data import load_images, resolve_splits
    from imgai.plots import save_figure

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ImgaiError(f"preview output '{output}' must be a .png file")
    if not output.parent.is_dir():
        raise ImgaiError(
            f"folder '{output.parent}' for the preview does not exist: create it or choose another `output`"
        )
    splits = resolve_splits(config.data, config.seed)
    order = np.random.default_rng(config.seed).permutation(len(splits.train))[:count]
    spec = DecodeSpec.from_config(config.data)
    decoded = load_images(
        splits.train.subset(order), spec, workers=config.data.workers, label="decoding preview images"
    )
    if len(decoded) == 0:
        raise ImgaiError(f"none of the {len(order)} picked training images could be read")
    class_names = splits.class_names
    originals = decoded.images.astype(np.float32)
    n = len(originals)
    active = config.augment.is_active()
    if active:
        # Each image its own "class": the mixed labels then say which images were blended, and
        # in what shares (the layers' random draws do not depend on the label values).
        augmenter = Augmenter(config.augment, spec, config.seed)
        augmented, mixes = augmenter(originals, np.eye(n, dtype=np.float32), 0, 0)
    log(f"Augmentation: {describe(config.augment)}")

    def show(ax, image, caption):
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        grey = pixels.shape[-1] == 1
        ax.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=10)
        ax.axis("off")

    names = [Path(p).name for p in decoded.paths]
    names = [name if len(name) <= 22 else f"{name[:10]}…{name[-10:]}" for name in names]
    if active:
        per_row = min(4, n)
        rows = int(np.ceil(n / per_row))
        fig = Figure(figsize=(4.6 * per_row, 2.5 * rows + 0.7), layout="constrained")
        cells = fig.subfigures(rows, per_row, squeeze=False, wspace=0.03, hspace=0.03)
        for k, cell in enumerate(cells.flat):
            if k >= n:
                continue
            cell.set_facecolor("0.94")  # one shaded box per original/augmented pair
            left, right = cell.subplots(1, 2)
            show(left, originals[k], f"{names[k]}\n{class_names[decoded.labels[k]]}")
            show(right, augmented[k], "augmented:\n" + _mix_caption(mixes[k], decoded.labels, class_names))
        title = "Training images (left of each pair) and as augmented for training (right): " + describe(
            config.augment
        )
    else:
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        fig = Figure(figsize=(2.6 * cols, 2.9 * rows + 0.9), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, image, label, name in zip(axes.flat, originals, decoded.labels, names):
            show(ax, image, f"{name}\n{class_names[label]}")
        title = "No augmentation configured: showing the training images as the model sees them"
    image_size = "x".join(str(v) for v in spec.image_size)
    width = int(8 * fig.get_figwidth())  # characters of 12-pt text across the figure
    fig.suptitle(textwrap.fill(f"{title} ({n} of {len(splits.train)}, {image_size} px)", width), fontsize=12)
    save_figure(fig, output)
    what = (
        "training images beside their augmented versions" if active else "training images (no augmentation)"
    )
    log(f"Wrote {n} {what} to {output}")
    return output
