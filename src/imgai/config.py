"""Configuration: the schema below is the single source of every default.

A run's configuration is built in three steps:

1. YAML files are read and deep-merged in order (later files win);
2. ``key.sub=value`` overrides from the command line are applied (values are parsed as YAML, so
   ``data.image_size=[128,128]`` and ``train.learning_rate=3e-4`` do what they look like);
3. the result is validated against :class:`Config`.

Every mistake becomes one :class:`~imgai.errors.ImgaiError` line: an unknown key names the closest
valid key, a bad value names its dotted path, the value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imgai import boundedyaml, names
from imgai.errors import ImgaiError
from imgai.text import short_repr

# keras.optimizers.AdamW's own default, which an empty train.weight_decay means for adamw.
ADAMW_DEFAULT_WEIGHT_DECAY = 0.004

# Upper bounds well above any real use, so a typo (an extra zero, 1e9) is a config error, not an
# out-of-memory crash minutes later.
MAX_IMAGE_SIDE = 8192
MAX_UNITS = 65536
RANDAUGMENT_OPS = 11  # len(keras.layers.RandAugment._AUGMENT_LAYERS) in Keras 3.15


def _expand_home(value: str | None) -> str | None:
    # The shell leaves '~' alone after '=' (data.root=~/photos) and YAML never expands it.
    return str(Path(value).expanduser()) if isinstance(value, str) and value.startswith("~") else value


class _Section(BaseModel):
    # Unknown keys are caught earlier with a "did you mean" hint; forbid is the safety net.
    # No setting means anything as inf or nan (an infinite learning rate trains NaN weights).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Section):
    """Where the images are and how they are turned into batches."""

    root: str | None = Field(
        None,
        description="Folder with one sub-folder per class, or with train/ val/ test/ sub-folders "
        "that each hold the class folders.",
    )
    train_dir: str | None = Field(None, description="Explicit training folder (overrides root).")
    val_dir: str | None = Field(None, description="Explicit validation folder.")
    test_dir: str | None = Field(None, description="Explicit test folder.")
    validation_split: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Fraction of the training folder held out for validation when there is no "
        "validation folder (same files as keras.utils.image_dataset_from_directory with the "
        "same seed).",
    )
    image_size: tuple[int, int] = Field(
        (224, 224), description="[height, width] the images are resized to; each 32 to 8192."
    )
    color_mode: Literal["rgb", "grayscale"] = Field("rgb", description="rgb (3 channels) or grayscale (1).")
    interpolation: Literal["bilinear", "nearest", "bicubic"] = Field(
        "bilinear",
        description="Resize filter, used by the loader (OpenCV) and by the resize layer in the "
        "model (Keras); both without antialiasing, as keras.utils.image_dataset_from_directory.",
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=65536,
        description="Images per training step: the global batch, split over every device and process of "
        "the run (see train.distribution).",
    )
    shuffle: bool = Field(True, description="Shuffle the file list before splitting and every epoch.")
    workers: int = Field(0, ge=0, le=1024, description="Threads that decode images; 0 = one per CPU core.")
    cache: Literal["auto", "memory", "disk", "none"] = Field(
        "auto",
        description="Where decoded images are kept: memory (decoded each run), disk (decoded once, "
        "memory-mapped, reused by later runs), none (decoded every batch); auto = memory if they fit "
        "comfortably in RAM, else disk.",
    )
    cache_dir: str = Field(
        "~/.cache/imgai",
        validate_default=True,  # '~' expanded, so a saved config.yaml reads back the same
        description="Folder of the disk cache (data.cache=disk); safe to delete.",
    )
    split_groups: Literal["none", "near_duplicates"] = Field(
        "none",
        description="With data.validation_split: near_duplicates keeps each group of exact or near "
        "duplicate images in one split (costs one extra decode of the training folder); none splits "
        "file by file, as keras.utils.image_dataset_from_directory.",
    )
    group_pattern: str | None = Field(
        None,
        description="With data.validation_split: a regular expression searched in each file's path "
        "relative to the training folder; files with the same match (its first group if it has one, "
        "e.g. '(patient\\d+)_') stay in one split.",
    )
    near_duplicate_distance: int = Field(
        8,
        ge=0,
        le=32,
        description="Two images are near duplicates when their 64-bit perceptual hashes differ in at "
        "most this many bits (imgai data check, data.split_groups=near_duplicates). 8 finds re-encoded, "
        "resized, brightened and 2 %-per-side cropped copies; at 10 distinct flower photos start to match.",
    )

    @field_validator("root", "train_dir", "val_dir", "test_dir", "cache_dir")
    @classmethod
    def _home_expanded(cls, value: str | None) -> str | None:
        return _expand_home(value)

    @field_validator("group_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        import re

        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value or None

    cache_max_gb: float = Field(
        50.0,
        gt=0.0,
        description="Size cap of data.cache_dir: after a cache is built, the least recently used "
        "others are removed until all fit (imgai data cache list shows them).",
    )
    max_image_pixels: int = Field(
        100_000_000,
        ge=1,
        le=2**40,
        description="Decoded pixels per image above which a file is skipped with a reason (large "
        "JPEGs are decoded at reduced scale first, so only crafted or huge images hit it).",
    )

    @field_validator("image_size", mode="before")
    @classmethod
    def _square_from_int(cls, value: Any) -> Any:
        # "data.image_size=128" is the natural thing to type for a square image.
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        return value

    @field_validator("image_size")
    @classmethod
    def _at_least_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32:
            raise ValueError("each side must be at least 32 pixels")
        if max(value) > MAX_IMAGE_SIDE:
            raise ValueError(f"each side must be at most {MAX_IMAGE_SIDE} pixels")
        return value


class ModelConfig(_Section):
    """Which architecture to build and its settings (each says which models it applies to)."""

    name: str = Field(
        "cnn",
        description="Architecture from the model registry: cnn, sepresnet (from scratch), or a "
        "keras.applications backbone: mobilenetv3small, mobilenetv3large, efficientnetv2b0, efficientnetv2b1, "
        "efficientnetv2s, resnet50, convnexttiny.",
    )
    filters: list[int] = Field(
        [32, 64, 128],
        min_length=1,
        description="cnn only: Conv2D filters per block; each block ends in 2x2 max-pooling.",
    )
    kernel_size: int = Field(3, ge=1, le=31, description="cnn only: Conv2D kernel size.")
    dense_units: int = Field(
        512, ge=1, le=MAX_UNITS, description="cnn only: units of the dense layer before the classifier."
    )
    dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout rate before the classifier (every model)."
    )
    widths: list[int] = Field(
        [32, 64, 128, 256, 512],
        min_length=3,
        description="sepresnet only: stem conv width, one width per residual stage (each halves the "
        "image), then the width of the last separable conv before pooling.",
    )
    depth: int = Field(2, ge=1, le=64, description="sepresnet only: separable convs in each residual stage.")
    weights: str | None = Field(
        "imagenet",
        description="Backbones only: imagenet (downloaded once into Keras's cache, ~/.keras/models), "
        "null (random init) or the path of a weights file (.h5 / .weights.h5) for the backbone.",
    )
    freeze: bool | None = Field(
        None,
        description="Backbones only: keep backbone weights fixed; null = frozen when weights are loaded "
        "(imagenet or a file), trainable when weights is null.",
    )
    pooling: Literal["avg", "max"] = Field(
        "avg", description="Backbones and sepresnet: global pooling of the last feature map."
    )
    head_units: int = Field(
        0,
        ge=0,
        le=MAX_UNITS,
        description="Backbones and sepresnet: units of a hidden Dense layer in the head; 0 = none.",
    )
    batchnorm_momentum: Literal["auto"] | float = Field(
        "auto",
        description="Momentum of the BatchNormalization moving statistics that inference uses (models trained "
        "from scratch; pretrained backbones keep theirs). auto: Keras's 0.99, lowered for short epochs to "
        "0.01 ** (1 / steps per epoch), so the statistics settle within one epoch; with 0.99 and 8 steps per "
        "epoch they lag the weights for dozens of epochs and validation can collapse to one class.",
    )

    @field_validator("weights")
    @classmethod
    def _home_expanded(cls, value: str | None) -> str | None:
        return _expand_home(value)

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        known = names.model_names()
        if value not in known:
            raise ValueError(f"unknown model; available: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _resolve_freeze(self) -> ModelConfig:
        # Recorded in config.yaml as it ran: a backbone is frozen when it starts from weights.
        if self.freeze is None and self.name in names.BACKBONES:
            self.freeze = self.weights is not None
        return self

    @field_validator("batchnorm_momentum", mode="before")
    @classmethod
    def _auto_or_fraction(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and value != "auto"):
            raise ValueError("use auto, or a number from 0 to 1 such as 0.9")
        if isinstance(value, (int, float)) and not 0.0 <= value < 1.0:
            raise ValueError("the momentum must be 0 or more and below 1 (e.g. 0.9), or auto")
        return value

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(w < 1 or w > MAX_UNITS for w in value):
            raise ValueError(f"every width must be 1 to {MAX_UNITS}")
        return value

    @field_validator("filters")
    @classmethod
    def _positive_filters(cls, value: list[int]) -> list[int]:
        if any(f < 1 or f > MAX_UNITS for f in value):
            raise ValueError(f"every filter count must be 1 to {MAX_UNITS}")
        return value


class AugmentConfig(_Section):
    """Random changes to training images (never to validation data, never saved in the model)."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = Field(
        "none", description="RandomFlip mode."
    )
    rotation: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="RandomRotation factor: fraction of a full turn (0.1 = up to +-36 degrees).",
    )
    zoom: float = Field(
        0.0, ge=0.0, lt=1.0, description="RandomZoom factor: zoom in or out by up to this fraction."
    )
    translation: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="RandomTranslation factor: shift by up to this fraction of height and width.",
    )
    shear: float = Field(0.0, ge=0.0, le=1.0, description="RandomShear factor along x and y.")
    fill_mode: Literal["reflect", "wrap", "constant", "nearest"] = Field(
        "reflect", description="How rotation, zoom, translation and shear fill the pixels they expose."
    )
    contrast: float = Field(0.0, ge=0.0, le=1.0, description="RandomContrast factor.")
    brightness: float = Field(
        0.0, ge=0.0, le=1.0, description="RandomBrightness factor: shift by up to this fraction of 255."
    )
    saturation: float = Field(0.0, ge=0.0, le=1.0, description="RandomSaturation factor (rgb only).")
    hue: float = Field(0.0, ge=0.0, le=1.0, description="RandomHue factor (rgb only).")
    crop: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="RandomCrop to this fraction of each side (1.0 = off); the model's resize layer scales "
        "the crop back up.",
    )
    randaugment: int = Field(
        0,
        ge=0,
        le=RANDAUGMENT_OPS,
        description=f"RandAugment: number of random operations per image (at most {RANDAUGMENT_OPS}, "
        "the operations Keras has); 0 = off.",
    )
    randaugment_magnitude: float = Field(
        0.5, gt=0.0, le=1.0, description="RandAugment factor (strength of each operation)."
    )
    erasing: float = Field(
        0.0, ge=0.0, le=1.0, description="RandomErasing: probability of erasing a random rectangle; 0 = off."
    )
    erasing_scale: tuple[float, float] = Field(
        (0.02, 0.33), description="RandomErasing: [min, max] fraction of the image erased."
    )
    mixup: float = Field(
        0.0, ge=0.0, description="MixUp alpha (labels are mixed too); 0 = off, 0.2 is typical."
    )
    cutmix: float = Field(
        0.0, ge=0.0, description="CutMix factor (labels are mixed too); 0 = off, 1.0 is typical."
    )

    @field_validator("erasing_scale")
    @classmethod
    def _ordered_fractions(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 1.0:
            raise ValueError("needs 0 < min <= max <= 1")
        return value

    def is_active(self) -> bool:
        """True if any augmentation is switched on."""
        off = AugmentConfig()
        return any(
            getattr(self, name) != getattr(off, name)
            for name in (
                "flip",
                "rotation",
                "zoom",
                "translation",
                "shear",
                "contrast",
                "brightness",
                "saturation",
                "hue",
                "crop",
                "randaugment",
                "erasing",
                "mixup",
                "cutmix",
            )
        )


class TrainConfig(_Section):
    """How the model is fitted."""

    epochs: int = Field(10, ge=1, le=1_000_000, description="Passes over the training data.")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32",
        description="Compute dtype policy: mixed_* compute in 16 bits with float32 weights and a float32 "
        "softmax; mixed_float16 pays off on NVIDIA GPUs, mixed_bfloat16 on TPUs and recent CPUs/GPUs.",
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = Field("adam", description="Optimizer.")
    learning_rate: float = Field(1e-3, gt=0.0, description="Optimizer learning rate.")
    loss: Literal["categorical_crossentropy"] = Field(
        "categorical_crossentropy", description="Loss on one-hot labels."
    )
    monitor: Literal["val_accuracy", "val_loss", "val_f1_macro", "val_min_recall", "accuracy", "loss"] = (
        Field(
            "val_accuracy",
            description="Metric that picks best.keras and drives early stopping and plateaus (val_* needs "
            "validation data). val_f1_macro and val_min_recall (the recall of the weakest class) are computed "
            "from the validation predictions once per epoch and logged in history.csv.",
        )
    )
    top_k: int = Field(
        5, ge=2, le=1000, description="k of the top-k accuracy reported when there are more than 5 classes."
    )
    monitor_mode: Literal["auto", "min", "max"] = Field(
        "auto",
        description="Whether train.monitor improves downwards (min) or upwards (max); auto: min for losses.",
    )
    # Optimizer details
    weight_decay: float | None = Field(
        None,
        ge=0.0,
        description="Decoupled weight decay; empty = 0.004 for adamw (Keras' default), none for the others.",
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum of sgd and rmsprop.")
    nesterov: bool = Field(False, description="Nesterov momentum for sgd.")
    gradient_clip_norm: float | None = Field(
        None, gt=0.0, description="Rescale gradients whose global norm exceeds this (empty = no clipping)."
    )
    gradient_clip_value: float | None = Field(
        None, gt=0.0, description="Clip every gradient element to [-value, value] (empty = no clipping)."
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="Label smoothing of the cross-entropy loss."
    )
    # Learning-rate schedule: applied per step by imgai, so saved models hold only a plain optimizer.
    schedule: Literal["constant", "cosine", "step", "exponential"] = Field(
        "constant",
        description="Learning rate over the run: constant; cosine (down to min_learning_rate); step (times "
        "decay_factor every decay_epochs); exponential (the same, smoothly).",
    )
    warmup_epochs: float = Field(
        0.0,
        ge=0.0,
        description="Linear warmup from 0 to learning_rate over this many epochs (fractions allowed).",
    )
    min_learning_rate: float = Field(0.0, ge=0.0, description="Where the cosine schedule ends.")
    decay_epochs: float = Field(
        10.0, gt=0.0, description="Epochs per decay step of the step and exponential schedules."
    )
    decay_factor: float = Field(
        0.1, gt=0.0, le=1.0, description="Learning-rate multiplier per decay_epochs (step, exponential)."
    )
    plateau_patience: int | None = Field(
        None,
        ge=1,
        description="Reduce on plateau: epochs without improvement of train.monitor before the learning "
        "rate is multiplied by plateau_factor (empty = off). Works on top of any schedule.",
    )
    plateau_factor: float = Field(
        0.1, gt=0.0, lt=1.0, description="Learning-rate multiplier when a plateau is hit."
    )
    plateau_min_learning_rate: float = Field(
        0.0, ge=0.0, description="Reduce on plateau never goes below this."
    )
    # Callbacks
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many epochs without improvement of train.monitor (empty = off).",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0.0, description="Smallest change of train.monitor that counts as improvement."
    )
    restore_best_weights: bool = Field(
        True,
        description="When early stopping triggers, put the best epoch's weights (best.keras) back into the model.",
    )
    tensorboard: bool = Field(False, description="Also write TensorBoard logs to runs/<name>/tensorboard.")
    calibrate: bool = Field(
        False,
        description="At the end of training, fit a softmax temperature on the validation split and write "
        "runs/<name>/calibrated.keras and calibration.json (as 'imgai calibrate' does).",
    )
    # Imbalance
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="Loss weight per class: balanced (n_images / (n_classes * n_class_images)) or "
        "{class_name: weight} (classes left out weigh 1); empty = all 1.",
    )
    # Fine-tuning of a pretrained backbone (models.backbone_layers)
    fine_tune_after: int | None = Field(
        None,
        ge=0,
        description="After this many epochs unfreeze the backbone (see fine_tune_layers) and continue at "
        "fine_tune_learning_rate in the same run (empty = never).",
    )
    fine_tune_layers: int | Literal["all"] = Field(
        "all",
        description="How many of the backbone's top layers to unfreeze, or all (BatchNorm layers stay frozen).",
    )
    fine_tune_learning_rate: float | None = Field(
        None, gt=0.0, description="Peak learning rate of the fine-tune stage (empty = learning_rate / 10)."
    )
    # Speed
    jit_compile: Literal["auto"] | bool = Field(
        "auto", description="Compile the training step with XLA: auto, true or false."
    )
    steps_per_execution: int = Field(
        1,
        ge=1,
        le=100_000,
        description="Training steps run per call into the backend "
        "(fewer Python round trips; the learning rate then changes once per call).",
    )

    # Several devices / processes (imgai.distribute)
    distribution: Literal["none", "auto", "data_parallel"] = Field(
        "auto",
        description="none: one device; data_parallel: every device of train.devices, the model copied on each "
        "and each global batch split over them; auto: data_parallel when the machine has more than one GPU/TPU "
        "or the run has several processes (--num-processes), else none. data.batch_size is the global batch.",
    )
    devices: Literal["all"] | int | list[int] = Field(
        "all",
        description="Devices of each machine used by data_parallel: all, a count (the first N), or a list "
        "of device numbers such as [0, 2].",
    )
    distributed_timeout: float = Field(
        300.0,
        gt=0.0,
        description="Seconds a process of a multi-process run waits for the coordinator at start, or for "
        "the other processes during training, before the run ends with an error.",
    )

    @field_validator("class_weight", mode="before")
    @classmethod
    def _balanced_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "balanced":
            raise ValueError("use balanced, or a mapping such as {cats: 1.0, dogs: 3.0}")
        return value

    @field_validator("class_weight")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(w <= 0 for w in value.values()):
            raise ValueError("every class weight must be greater than 0")
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _all_count_or_list(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and value != "all"):
            raise ValueError("use all, a number of devices, or a list of device numbers such as [0, 1]")
        return value

    @field_validator("devices")
    @classmethod
    def _some_devices(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("use at least 1 device, or all")
        if isinstance(value, list) and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError("list each device number (0, 1, ...) once, at least one")
        return value

    @field_validator("fine_tune_layers")
    @classmethod
    def _at_least_one_layer(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("unfreeze at least 1 layer, or all")
        return value

    @field_validator("gradient_clip_value")
    @classmethod
    def _one_clipping(cls, value: Any, info) -> Any:
        if value is not None and info.data.get("gradient_clip_norm") is not None:
            raise ValueError("set gradient_clip_norm or gradient_clip_value, not both")
        return value

    @model_validator(mode="after")
    def _resolve_empty_values(self) -> TrainConfig:
        # "Empty means X" is decided here, so the saved config.yaml records what actually ran.
        if self.weight_decay is None:
            self.weight_decay = ADAMW_DEFAULT_WEIGHT_DECAY if self.optimizer == "adamw" else 0.0
        if self.fine_tune_learning_rate is None and self.fine_tune_after is not None:
            self.fine_tune_learning_rate = self.learning_rate / 10
        return self


class OutputConfig(_Section):
    """Where runs are written."""

    dir: str = Field("runs", description="Parent folder of all runs.")
    name: str | None = Field(
        None, description="Run folder name; auto-numbered (run1, run2, ...) when empty. Never overwritten."
    )

    @field_validator("dir")
    @classmethod
    def _home_expanded(cls, value: str) -> str:
        return _expand_home(value)


class EvalConfig(_Section):
    """Scoring and the quality gate of 'imgai eval': exit code 1 when a check fails (flags win)."""

    top_k: int | None = Field(
        None, ge=2, description="k of the top-k accuracy; empty = 5 with more than 5 classes, else 2."
    )
    fail_under: dict[str, float] = Field(
        {}, description="Lowest allowed value per metric, e.g. {accuracy: 0.9, f1_macro: 0.85}."
    )
    fail_over: dict[str, float] = Field({}, description="Highest allowed value per metric, e.g. {loss: 0.5}.")
    min_class_recall: float | None = Field(
        None, ge=0.0, le=1.0, description="Lowest allowed recall of every class, e.g. 0.7."
    )
    baseline: str | None = Field(
        None, description="metrics.json of an earlier model, compared with max_drop."
    )
    max_drop: dict[str, float] = Field(
        {}, description="Largest allowed drop per metric below the baseline, e.g. {accuracy: 0.01}."
    )
    gallery_size: int = Field(
        16,
        ge=0,
        le=400,
        description="How many of the most confidently wrong images misclassified.png shows; 0 = no gallery.",
    )

    @field_validator("baseline")
    @classmethod
    def _home_expanded(cls, value: str | None) -> str | None:
        return _expand_home(value)

    @field_validator("fail_under", "fail_over", "max_drop")
    @classmethod
    def _known_metrics(cls, value: dict[str, float], info) -> dict[str, float]:
        direction = {"fail_under": True, "fail_over": False}.get(info.field_name)
        for name, bound in value.items():
            try:
                names.check_metric_name(name, direction)
            except ImgaiError as exc:
                raise ValueError(exc.plain) from None
            if info.field_name == "max_drop" and bound < 0:
                raise ValueError(f"the drop allowed for '{name}' must be 0 or more")
        return value

    def is_empty(self) -> bool:
        """True when there is no gate check to run."""
        return not (self.fail_under or self.fail_over or self.min_class_recall is not None or self.max_drop)


class InferConfig(_Section):
    """How 'imgai eval', 'predict' and 'explain' feed images to a trained model."""

    batch_size: int = Field(32, ge=1, description="Images per inference batch.")
    workers: int = Field(0, ge=0, description="Threads that decode images; 0 = one per CPU core.")
    top_k: int = Field(3, ge=1, description="imgai predict: how many classes to show per image.")
    format: Literal[names.PREDICTION_FORMATS] = Field(
        "table", description="imgai predict: table for people; json, jsonl or csv for programs."
    )
    tta: Literal["none", "flip", "flip+crops"] = Field(
        "none",
        description="Test-time augmentation of 'imgai eval' and 'predict': average the probabilities over "
        "the image and its mirror (flip, 2x the inference) or also four corner crops of 87.5 % each way "
        "(flip+crops, 10x); none = off.",
    )


class ExplainConfig(_Section):
    """Grad-CAM heat maps of 'imgai explain'."""

    output_dir: str = Field(".", description="Folder of the IMAGE-NAME_gradcam.png files.")
    layer: str | None = Field(None, description="Feature-map layer to read; empty = the last 4-D one.")

    @field_validator("output_dir")
    @classmethod
    def _home_expanded(cls, value: str) -> str:
        return _expand_home(value)


class Config(_Section):
    """A whole imgai configuration."""

    seed: int = Field(
        123,
        ge=0,
        le=2**32 - 1,
        description="Seeds the split, the shuffling, the weight initialisation and every other RNG "
        "(0 to 2**32-1, what NumPy accepts).",
    )
    deterministic: bool = Field(
        False,
        description="Deterministic ops too (slower on GPU): the same config gives the same history.csv on CPU.",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    infer: InferConfig = Field(default_factory=InferConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly dict (tuples become lists)."""
        return _plain(self.model_dump(mode="python"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


SECTIONS = tuple(Config.model_fields)[2:]  # data, model, ..., explain (after seed, deterministic)


def defaults() -> Config:
    """The default configuration: every default lives in the schema above."""
    return Config()


# --------------------------------------------------------------------------------------------
# Loading, merging, overriding


# Paths a config file names to read from. Relative ones are read from the file's folder, so a
# config works from any folder; a path that exists only relative to the current folder (how
# configs were read before) still works. Output folders stay relative to the current folder.
INPUT_PATHS = (("data", "root"), ("data", "train_dir"), ("data", "val_dir"), ("data", "test_dir"),
               ("eval", "baseline"), ("model", "weights"))  # fmt: skip


def anchor_paths(data: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """``data`` (one config file's mapping) with its relative input paths resolved from ``folder``."""
    data = copy.deepcopy(data)
    for section, key in INPUT_PATHS:
        values = data.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            continue
        beside_file = Path(os.path.normpath(Path(folder) / value))
        if beside_file.exists() or (key != "weights" and not Path(value).exists()):
            values[key] = str(beside_file)  # when neither exists, the error names the file's folder
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML config file into a dict, with user-facing errors; relative input paths in it
    are resolved from the file's folder (see :func:`anchor_paths`)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():  # checked before opening: a FIFO would block the read forever
            raise ImgaiError(f"config file '{path}' is not a regular file: pass a YAML file as `config`")
        raise ImgaiError(f"config file '{path}' not found: check the path given as `config`")
    try:
        with path.open("rb") as fh:
            raw = fh.read(boundedyaml.MAX_BYTES + 1)
        data = boundedyaml.load(raw.decode("utf-8"))
    except boundedyaml.YamlLimitError as exc:
        raise ImgaiError(f"config file '{path}' {exc}: this is not a config imgai can use") from None
    except OSError as exc:
        raise ImgaiError(f"config file '{path}' cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ImgaiError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ImgaiError(f"config file '{path}' is not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImgaiError(f"config file '{path}' must hold a mapping of sections (data:, model:, ...)")
    return anchor_paths(data, path.parent)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _text_fields(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Dotted keys whose value is plain text, mapped to whether it may be empty (str | None)."""
    fields: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields.update(_text_fields(annotation, f"{prefix}{name}."))
        elif annotation is str or (
            typing.get_origin(annotation) in (typing.Union, types.UnionType)
            and set(typing.get_args(annotation)) == {str, type(None)}
        ):
            fields[f"{prefix}{name}"] = annotation is not str
    return fields


_YAML_NULLS = ("", "~", "null", "Null", "NULL")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> (["train", "epochs"], 5). Values are parsed as YAML, except for text
    settings: ``output.name=007`` and ``data.root=yes`` stay the strings they look like."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep and text.lower().endswith((".yaml", ".yml")):
        shown = short_repr(text)
        raise ImgaiError(
            f"{shown} is a config file, not a key.sub=value override: pass it as `config` {shown[1:-1]}"
        )
    if not sep or not key or any(not part for part in key.split(".")) or len(key) > 200:
        raise ImgaiError(
            f"override {short_repr(text)} is not of the form key.sub=value (for example train.epochs=5)"
        )
    text_fields = _text_fields(Config)
    if key in text_fields:
        if len(raw) > boundedyaml.MAX_SCALAR:
            raise ImgaiError(
                f"override {short_repr(key)} holds a value of {len(raw):,} characters: give a plain value"
            )
        if text_fields[key] and raw.strip() in _YAML_NULLS:  # data.root= / model.weights=null: empty
            return key.split("."), None
        return key.split("."), raw.strip()
    try:
        value = boundedyaml.load(raw) if raw.strip() else None
    except boundedyaml.YamlLimitError as exc:
        raise ImgaiError(f"override {short_repr(key)} {exc}: give a plain value") from None
    except yaml.YAMLError:
        value = raw  # an unparseable value stays a string; the schema then judges it
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def _valid_paths(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel] | None]:
    """Every dotted key the schema knows, mapped to its section model (None for leaves)."""
    paths: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths[dotted] = annotation
            paths.update(_valid_paths(annotation, dotted + "."))
        else:
            paths[dotted] = None
    return paths


def _check_unknown_keys(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    known = _valid_paths(Config)
    for key, value in data.items():
        printable = isinstance(key, str) and key.isprintable() and len(key) <= 80
        dotted = f"{prefix}{key}" if printable else prefix + short_repr(key)
        if not isinstance(key, str) or key not in model.model_fields:
            siblings = list(model.model_fields)
            # Compare bare names first (the shared prefix would make every sibling look close),
            # then dotted paths anywhere, for a key put in the wrong section.
            close = [f"{prefix}{m}" for m in difflib.get_close_matches(str(key), siblings, n=1, cutoff=0.6)]
            # A key without its section (epochs=3): the setting of that name in whichever section has it.
            close = close or sorted(path for path in known if path.endswith(f".{key}"))[:1]
            close = close or difflib.get_close_matches(str(dotted), list(known), n=1, cutoff=0.75)
            valid = ", ".join(f"{prefix}{name}" for name in siblings)
            hint = f"; did you mean {close[0]}?" if close else f"; valid keys here: {valid}"
            raise ImgaiError(f"unknown config key '{dotted}'{hint}")
        section = known.get(dotted)
        if section is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ImgaiError(
                    f"config key '{dotted}' must be a section (a mapping such as {dotted}.<key>: value), "
                    f"got {short_repr(value)}"
                )
            _check_unknown_keys(value, section, dotted + ".")


def _safe_part(part: Any) -> str:
    return part if isinstance(part, str) and part.isprintable() and len(part) <= 80 else short_repr(part)


def _describe_validation_error(exc: ValidationError) -> str:
    errors = exc.errors()
    # A union (class_weight: balanced or a mapping) reports one error per branch; the deepest one
    # names the actual problem. Branch tags such as "literal['balanced']" are not config keys.
    field = errors[0]["loc"][:2]
    err = max((e for e in errors if e["loc"][:2] == field), key=lambda e: len(e["loc"]))
    parts = [p for p in err["loc"] if not isinstance(p, int) and not (isinstance(p, str) and "[" in p)]
    # Neither the path (a class_weight key) nor the value may be long or hold control characters:
    # both come from the user's file, and an expanded alias can be huge.
    loc = ".".join(_safe_part(p) for p in parts) or "config"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if len(msg) > 300 or not msg.isprintable():
        msg = short_repr(msg)[1:-1]
    value = err.get("input")
    shown = short_repr(value) if not isinstance(value, dict) else "a mapping"
    others = len({e["loc"][:2] for e in errors}) - 1
    more = f" (and {others} more problem(s))" if others else ""
    return f"invalid config value {loc}={shown}: {msg}{more}"


def build_config(data: dict[str, Any]) -> Config:
    """Validate a merged dict into a :class:`Config`."""
    data = {k: v for k, v in data.items()}
    # A section written as "train:" with nothing under it is an empty section, not an error.
    for name in SECTIONS:
        if name in data and data[name] is None:
            data[name] = {}
    _check_unknown_keys(data, Config)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ImgaiError(_describe_validation_error(exc)) from None


def load_config(files: list[str | Path] | tuple = (), overrides: list[str] | tuple = ()) -> Config:
    """Read ``files`` in order, apply ``overrides`` and validate. The main entry point."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = deep_merge(merged, read_yaml(path))
    merged = apply_overrides(merged, list(overrides))
    return build_config(merged)


def check_config_file(path: str | Path, overrides: list[str] | tuple = ()) -> list[str]:
    """Validate one config file (with ``overrides``); raises on an error, returns warnings: the
    folders and files it names that do not exist here (training would stop on them)."""
    config = load_config([path], overrides)
    warnings = []
    data = config.data
    if not data.root and not data.train_dir:
        warnings.append("data.root is not set: training needs it (add data.root=DIR when training)")
    for key in ("root", "train_dir", "val_dir", "test_dir"):
        folder = getattr(data, key)
        if folder and not Path(folder).is_dir():
            warnings.append(f"data.{key} '{folder}' is not a folder here: training would stop on it")
    if config.eval.baseline and not Path(config.eval.baseline).is_file():
        warnings.append(
            f"eval.baseline '{config.eval.baseline}' does not exist here: the gate would stop on it"
        )
    return warnings


def load_sections(
    files: list[str | Path] | tuple = (), sections: tuple[str, ...] = ("eval", "infer", "output"), **updates
) -> Config:
    """A :class:`Config` with only ``sections`` read from ``files`` (merged in order, then deep-merged
    with ``updates``: section name -> mapping); the other sections keep their defaults and are not
    validated, so a run's saved config.yaml or a training config can be passed as it is."""
    merged: dict[str, Any] = {}
    for path in files:
        data = read_yaml(path)
        for name in sections:
            section = data.get(name) or {}
            if not isinstance(section, dict):
                raise ImgaiError(f"config key '{name}' in '{path}' must be a section ({name}.<key>: value)")
            merged = deep_merge(merged, {name: section})
    return build_config(deep_merge(merged, {k: v for k, v in updates.items() if v}))


def load_eval_section(files: list[str | Path] | tuple = ()) -> EvalConfig:
    """The ``eval`` section merged from ``files`` in order (see :func:`load_sections`)."""
    return load_sections(files, ("eval",)).eval


def dump_config(config: Config) -> str:
    """The config as YAML, sections in schema order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


HELP_WIDTH = 100  # 'imgai config show' lines: readable in a terminal, no 250-character lines


def _help_with_choices(field) -> str:
    """The field's help, ending in its allowed values when they are a fixed list not yet named."""
    text = field.description or ""
    annotation = field.annotation
    choices = [
        value
        for arg in (annotation, *typing.get_args(annotation))
        if typing.get_origin(arg) is Literal
        for value in typing.get_args(arg)
    ]
    if choices and not all(str(c) in text for c in choices):
        text = f"{text.rstrip('.')}. One of: {', '.join(map(str, choices))}."
    return text


def _commented(line: str, help_text: str, indent: str) -> list[str]:
    """``line  # help`` wrapped to HELP_WIDTH, the rest as comment lines under it (still YAML)."""
    import textwrap

    if not help_text:
        return [line]
    first, *rest = textwrap.wrap(
        help_text, HELP_WIDTH, initial_indent=f"{line}  # ", subsequent_indent=f"{indent}  # "
    ) or [line]
    if len(first) <= len(line) + 4:  # the key and value alone fill the line: help below it
        return [line, *textwrap.wrap(help_text, HELP_WIDTH, initial_indent=f"{indent}  # ",
                                     subsequent_indent=f"{indent}  # ")]  # fmt: skip
    return [first, *rest]


def describe_schema() -> str:
    """Defaults with their help text, as commented YAML (used by ``imgai config show``)."""
    lines: list[str] = []

    def emit(model: type[BaseModel], instance: BaseModel, indent: str) -> None:
        for name, field in model.model_fields.items():
            value = getattr(instance, name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                doc = (annotation.__doc__ or "").strip().splitlines()[0]
                lines.append(f"{indent}{name}:  # {doc}")
                emit(annotation, value, indent + "  ")
                continue
            if not field.is_required():  # the field's own default, before "empty means X" is resolved
                value = field.get_default(call_default_factory=True)
            rendered = yaml.safe_dump(_plain(value), default_flow_style=True).strip()
            if rendered.endswith("\n..."):
                rendered = rendered[: -len("\n...")]
            rendered = rendered.removesuffix("...").strip()
            lines.extend(_commented(f"{indent}{name}: {rendered}", _help_with_choices(field), indent))

    emit(Config, defaults(), "")
    return "\n".join(lines) + "\n"
