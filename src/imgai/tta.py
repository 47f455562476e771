"""Test-time augmentation: predict several views of each image and average the probabilities.

``flip``: the image and its mirror (2 views). ``flip+crops``: the image and four corner crops of
87.5 % of each side, resized back to the model's input size, each as is and mirrored (10 views).
Costs that many times the inference; often worth a point of accuracy on small data.

:class:`TestTimeAugmentation` wraps a model (Keras, or an exported artifact's runtime) and answers
``predict_on_batch`` and ``output_shape`` like it, so ``imgai eval`` and ``imgai predict`` use it
through their one inference path (:func:`imgai.predict.run_inference`).
"""

from __future__ import annotations

import numpy as np

TTA_MODES = ("none", "flip", "flip+crops")
CROP_SHARE = 0.875


def view_count(mode: str) -> int:
    return {"none": 1, "flip": 2, "flip+crops": 10}[mode]


def _resize_batch(images: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    from imgai.data import _resize  # OpenCV (or Pillow): the resize training used

    out = np.empty((len(images), height, width, images.shape[-1]), dtype=images.dtype)
    for i, image in enumerate(images):
        resized = _resize(np.ascontiguousarray(image), height, width, interpolation)
        out[i] = resized.reshape(height, width, -1)  # OpenCV drops a single channel
    return out


def views(images: np.ndarray, mode: str, interpolation: str = "bilinear") -> list[np.ndarray]:
    """The views of a batch ``(N, H, W, C)``: the batch itself first."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}")
    out = [images]
    if mode == "none":
        return out
    mirror = images[:, :, ::-1]
    out.append(np.ascontiguousarray(mirror))
    if mode == "flip+crops":
        height, width = images.shape[1:3]
        crop_h, crop_w = max(1, round(height * CROP_SHARE)), max(1, round(width * CROP_SHARE))
        for top, left in (
            (0, 0),
            (0, width - crop_w),
            (height - crop_h, 0),
            (height - crop_h, width - crop_w),
        ):
            crop = _resize_batch(
                images[:, top : top + crop_h, left : left + crop_w], height, width, interpolation
            )
            out += [crop, np.ascontiguousarray(crop[:, :, ::-1])]
    return out


class TestTimeAugmentation:
    """``model`` with ``predict_on_batch`` averaging the probabilities of ``mode``'s views.

    ``plain`` collects the probabilities of the unchanged images too (the first view), so that
    eval can report what the augmentation gained without predicting twice."""

    __test__ = False  # not a pytest test class

    def __init__(self, model, mode: str, interpolation: str = "bilinear"):
        if mode not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {mode!r}")
        self.model, self.mode, self.interpolation = model, mode, interpolation
        self.output_shape = model.output_shape
        self.plain: list[np.ndarray] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        outputs = [
            np.asarray(self.model.predict_on_batch(view), dtype=np.float32)
            for view in views(x, self.mode, self.interpolation)
        ]
        self.plain.append(outputs[0])
        return np.mean(outputs, axis=0)

    def plain_probabilities(self) -> np.ndarray:
        return np.concatenate(self.plain) if self.plain else np.zeros((0, self.output_shape[-1]), np.float32)


def with_tta(model, mode: str | None, interpolation: str = "bilinear"):
    """``model`` itself without augmentation, else wrapped."""
    if mode is None or mode == "none":
        return model
    return TestTimeAugmentation(model, mode, interpolation)
