"""Watching the validation split while training: per-class metrics to choose checkpoints by, and
warnings when the model stops learning anything useful.

- ``val_f1_macro`` and ``val_min_recall`` (the recall of the weakest class, the figure the
  quality gate's ``--min-class-recall`` checks) are computed from the model's predictions on the
  validation batches training already holds (decoded once, from memory or the disk cache), once
  per epoch, when ``train.monitor`` asks for one of them.
- Collapse: when every validation image gets the same class, the run says so at once, with the
  likely causes, instead of ending "Best epoch 1/30" in silence. Checked for free from
  ``val_accuracy``: only when it equals the share of one class are the predictions computed to
  confirm it.
- Divergence: training accuracy far above validation accuracy is named once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imgai.errors import ImgaiError

PER_CLASS_MONITORS = ("val_f1_macro", "val_min_recall")
# Training accuracy this far above validation accuracy is worth a warning.
DIVERGENCE_GAP = 0.3


def per_class_scores(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> dict[str, float]:
    """``f1_macro`` and ``min_recall`` (over the classes that have images), as ``imgai eval``
    computes them."""
    from imgai.evaluate import compute_metrics

    metrics = compute_metrics(probabilities, labels, class_names)
    recalls = [row["recall"] for row in metrics["per_class"].values() if row["recall"] is not None]
    return {"f1_macro": metrics["f1_macro"], "min_recall": float(min(recalls)) if recalls else float("nan")}


def improves(value: float, reference: float | None, mode: str, delta: float = 0.0) -> bool:
    """Whether ``value`` is better than ``reference`` by more than ``delta`` (None: nothing yet)."""
    if reference is None:
        return True
    return value > reference + delta if mode == "max" else value < reference - delta


def best_epoch(values: list[float], mode: str) -> int:
    """The epoch (from 1) that best.keras holds after a run logged ``values``: the first best."""
    best, epoch = None, 0
    for i, value in enumerate(values, start=1):
        if improves(value, best, mode):
            best, epoch = value, i
    return epoch


def predict_batches(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of every real image of ``batches`` (padding of weight 0 left out)."""
    probabilities, labels = [], []
    for index in range(len(batches)):
        item = batches[index]
        x, y = item[0], item[1]
        keep = np.asarray(item[2]) > 0 if len(item) > 2 else slice(None)
        probabilities.append(np.asarray(model.predict_on_batch(x), dtype=np.float32)[keep])
        labels.append(np.asarray(y).argmax(axis=1)[keep])
    return np.concatenate(probabilities), np.concatenate(labels)


def collapse_message(epoch: int, predicted: np.ndarray, class_names: list[str], steps_per_epoch: int) -> str:
    name = class_names[int(predicted[0])]
    return (
        f"Warning: epoch {epoch}: the model predicts '{name}' for every one of the {len(predicted)} validation "
        f"images (it has collapsed to one class; validation accuracy is just that class's share). Likely "
        f"causes: BatchNorm statistics that have not settled ({steps_per_epoch} steps per epoch; see "
        "model.batchnorm_momentum), a learning rate too high (train.learning_rate), or one class dominating "
        "the training data (train.class_weight=balanced)."
    )


def make_validation_watch(
    val_batches,
    val_counts: list[int],
    class_names: list[str],
    compute_scores: bool,
    steps_per_epoch: int,
    log: Callable[[str], None],
):
    """The callback: adds ``val_f1_macro`` / ``val_min_recall`` to the epoch's logs when
    ``compute_scores``, and warns about collapse and divergence. Runs before the callbacks that
    read the logs (history.csv, checkpoints)."""
    import keras

    total = int(sum(val_counts))
    class_counts = {int(c) for c in val_counts if c}

    class ValidationWatch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.collapsed_epochs: list[int] = []
            self.warned_gap = self.warned_collapse = False

        def on_epoch_end(self, epoch, logs=None):
            if logs is None or "val_accuracy" not in logs:
                return
            val_accuracy = float(logs["val_accuracy"])
            right = int(round(val_accuracy * total))
            suspicious = right in class_counts  # val accuracy equals one class's share
            if compute_scores or suspicious:
                probabilities, labels = predict_batches(self.model, val_batches)
                if compute_scores:
                    scores = per_class_scores(probabilities, labels, class_names)
                    logs["val_f1_macro"], logs["val_min_recall"] = scores["f1_macro"], scores["min_recall"]
                predicted = probabilities.argmax(axis=1)
                if len(class_names) > 1 and len(predicted) > 1 and np.all(predicted == predicted[0]):
                    self.collapsed_epochs.append(epoch + 1)
                    # A first epoch from random weights often starts this way: said from the second in a row.
                    if not self.warned_collapse and epoch > 0 and epoch in self.collapsed_epochs:
                        self.warned_collapse = True
                        log(collapse_message(epoch + 1, predicted, class_names, steps_per_epoch))
            accuracy = logs.get("accuracy")
            if (
                not self.warned_gap
                and accuracy is not None
                and epoch >= 1
                and float(accuracy) - val_accuracy >= DIVERGENCE_GAP
            ):
                self.warned_gap = True
                log(
                    f"Warning: epoch {epoch + 1}: training accuracy {float(accuracy):.1%} but validation accuracy "
                    f"{val_accuracy:.1%}: the model does not carry what it learns over to new images. With few "
                    "images, try more augmentation, a smaller model or a pretrained backbone; see also "
                    "model.batchnorm_momentum."
                )

        def summary(self, best_epoch: int, last_epoch: int) -> str | None:
            """A closing warning when the best or the last epoch predicted one class only."""
            bad = [e for e in dict.fromkeys((best_epoch, last_epoch)) if e in self.collapsed_epochs]
            if not bad:
                return None
            which = " and ".join(f"{'best' if e == best_epoch else 'last'} epoch ({e})" for e in bad)
            return (
                f"Warning: in the {which} the model predicted one class for every validation image "
                f"({len(self.collapsed_epochs)} such epoch(s) in all): do not use it as it is; see the warning "
                "above for likely causes."
            )

    return ValidationWatch()


def check_monitor(monitor: str, has_validation: bool, multi_process: bool) -> None:
    """val_f1_macro / val_min_recall need validation data, in one process."""
    if monitor not in PER_CLASS_MONITORS:
        return
    if not has_validation:
        raise ImgaiError(
            f"train.monitor={monitor} needs validation data: add a val/ folder or data.validation_split, "
            "or set train.monitor=accuracy"
        )
    if multi_process:
        raise ImgaiError(
            f"train.monitor={monitor} is computed in one process only: use val_accuracy or val_loss with "
            "several processes"
        )
