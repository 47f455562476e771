"""Names shared by the config schema and the pipeline: metrics, model architectures.

This module imports nothing from imgai's pipeline (and no framework), so the config can
validate a model name or a gate metric without loading Keras.
"""

from __future__ import annotations

import re

from imgai.errors import ImgaiError

# Metrics ``imgai eval`` computes that a quality gate may bound (plus ``top<k>_accuracy``).
HIGHER_IS_BETTER = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)
LOWER_IS_BETTER = ("loss",)
TOP_K_METRIC = re.compile(r"^top(\d+)_accuracy$")

# Output formats of imgai predict (infer.format).
PREDICTION_FORMATS = ("table", "json", "jsonl", "csv")

# The backbones of keras.applications that imgai.models registers (name -> application class).
BACKBONES = {
    "mobilenetv3small": "MobileNetV3Small",
    "mobilenetv3large": "MobileNetV3Large",
    "efficientnetv2b0": "EfficientNetV2B0",
    "efficientnetv2b1": "EfficientNetV2B1",
    "efficientnetv2s": "EfficientNetV2S",
    "resnet50": "ResNet50",
    "convnexttiny": "ConvNeXtTiny",
}
# Every architecture imgai.models builds; a test checks it against the registry.
BUILTIN_MODELS = ("cnn", "sepresnet", *BACKBONES)
# name -> builder, filled by imgai.models (its _REGISTRY is this dict), so architectures of one's
# own registered there are valid model.name values without the config importing imgai.models.
MODEL_BUILDERS: dict = {}


def model_names() -> list[str]:
    return sorted({*BUILTIN_MODELS, *MODEL_BUILDERS})


def is_metric(name: str) -> bool:
    return name in HIGHER_IS_BETTER or name in LOWER_IS_BETTER or bool(TOP_K_METRIC.match(name))


def valid_metric_names() -> str:
    return ", ".join([*HIGHER_IS_BETTER, "topK_accuracy (e.g. top3_accuracy)", *LOWER_IS_BETTER])


def check_metric_name(name: str, higher_is_better: bool | None = None) -> str:
    """``name`` if it is a gateable metric (pointing the right way); else an ImgaiError."""
    known_lower = name in LOWER_IS_BETTER
    if not is_metric(name):
        raise ImgaiError(f"unknown metric '{name}': use one of {valid_metric_names()}")
    if higher_is_better is True and known_lower:
        raise ImgaiError(
            f"'{name}' is better when lower, so a lower bound makes no sense: "
            f"use `eval.fail_over` {name}=VALUE"
        )
    if higher_is_better is False and not known_lower:
        raise ImgaiError(f"'{name}' is better when higher: use `eval.fail_under` {name}=VALUE for it")
    return name
