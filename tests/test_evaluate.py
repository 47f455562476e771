"""Metrics from probabilities and labels, and the report files they are written to."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from imgai.evaluate import compute_metrics, confusion_matrix, format_metrics
from imgai.modelfile import ModelInfo
from imgai.report import most_confidently_wrong, write_report

CLASSES = ["cat", "dog", "fox"]


def one_hot_probs(predicted, confidence=0.8, num_classes=3):
    probs = np.full((len(predicted), num_classes), (1 - confidence) / (num_classes - 1), dtype=np.float32)
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def test_precision_recall_f1_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 1])
    m = compute_metrics(one_hot_probs(predicted), labels, CLASSES)
    # cat: tp 3, predicted 4, support 4 -> P 3/4, R 3/4; dog: tp 1, predicted 3, support 2;
    # fox: tp 1, predicted 1, support 2
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert m["per_class"]["cat"]["precision"] == pytest.approx(0.75)
    assert m["per_class"]["dog"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["dog"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["fox"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["fox"]["recall"] == pytest.approx(0.5)
    f1 = {"cat": 0.75, "dog": 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), "fox": 2 * 1 * 0.5 / 1.5}
    for name, value in f1.items():
        assert m["per_class"][name]["f1"] == pytest.approx(value)
    assert m["f1_macro"] == pytest.approx(np.mean(list(f1.values())))
    assert m["f1_weighted"] == pytest.approx((4 * f1["cat"] + 2 * f1["dog"] + 2 * f1["fox"]) / 8)
    assert m["precision_macro"] == pytest.approx((0.75 + 1 / 3 + 1.0) / 3)
    assert m["recall_weighted"] == pytest.approx(m["accuracy"])  # always true for weighted recall
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["per_class"]["cat"]["support"] == 4 and m["num_images"] == 8
    assert m["per_class"]["cat"]["accuracy"] == m["per_class"]["cat"]["recall"]  # older key kept


def test_loss_and_top_k():
    labels = np.array([0, 1, 2, 3])
    probs = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.5, 0.4, 0.05, 0.05], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]],
        dtype=np.float32,
    )
    m = compute_metrics(probs, labels, ["a", "b", "c", "d"], top_k=2)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.4, 0.3, 0.4])), rel=1e-5)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["top2_accuracy"] == pytest.approx(1.0)  # the second and third images are in the top 2


def test_class_never_predicted_and_never_seen():
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 0])
    m = compute_metrics(one_hot_probs(predicted), labels, CLASSES)
    assert m["per_class"]["dog"]["precision"] == 0.0 and m["per_class"]["dog"]["f1"] == 0.0
    assert m["per_class"]["fox"]["support"] == 0 and m["per_class"]["fox"]["recall"] is None
    # fox is neither a label nor a prediction: it does not drag the macro average down
    assert m["recall_macro"] == pytest.approx((1.0 + 0.0) / 2)
    assert "n/a" in format_metrics({**m, "num_skipped": 0})


def test_confusion_matrix_counts():
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_most_confidently_wrong_order():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.95, 0.05]])
    assert most_confidently_wrong(labels, probs, 5) == [3, 0, 2]
    assert most_confidently_wrong(labels, probs, 1) == [3]


def test_write_report_files(tmp_path):
    images = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(path)
        images.append(str(path))
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = one_hot_probs(np.array([0, 1, 1, 1, 2, 0]), 0.9)
    metrics = compute_metrics(probs, labels, CLASSES)
    metrics.update(
        num_skipped=0,
        class_names=CLASSES,
        model="m.keras",
        model_sha256="ab" * 32,
        data=str(tmp_path),
        imgai_version="0",
        keras_version="3",
        backend="tensorflow",
        timestamp="now",
    )
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n1,0.5,1.0,0.4,1.1\n2,0.7,0.8,0.6,0.9\n3,0.8,0.6,0.5,1.0\n"
    )
    out = tmp_path / "report"
    notes = []
    written = write_report(
        out,
        metrics,
        images,
        labels,
        probs,
        ModelInfo(tuple(CLASSES), (32, 32), "rgb"),
        history_path=history,
        log=notes.append,
    )
    names = {p.name for p in written}
    assert names == {
        "per_class.csv",
        "confusion_matrix.csv",
        "predictions.csv",
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "training_curves.png",
        "misclassified.png",
        "metrics.json",
        "summary.md",
    }
    for png in out.glob("*.png"):
        with Image.open(png) as img:
            assert img.format == "PNG" and img.size[0] > 200
    assert json.loads((out / "metrics.json").read_text())["confusion_matrix"] == metrics["confusion_matrix"]
    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["class"] for r in rows] == CLASSES and float(rows[0]["recall"]) == pytest.approx(0.5)
    matrix = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert matrix[0][1:] == CLASSES and matrix[1] == ["cat", "1", "1", "0"]
    predictions = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(predictions) == 6 and predictions[1]["predicted_class"] == "dog"
    summary = (out / "summary.md").read_text()
    assert "| cat |" in summary and "Accuracy **66.7%**" in summary
    assert not list(out.glob(".*tmp*")) and notes == []

    # Without history.csv the curves are skipped with a note, and an old plot does not linger.
    again = write_report(
        out,
        metrics,
        images,
        labels,
        probs,
        ModelInfo(tuple(CLASSES), (32, 32), "rgb"),
        history_path=tmp_path / "none.csv",
        log=notes.append,
    )
    assert "training_curves.png" not in {p.name for p in again} and not (out / "training_curves.png").exists()
    assert any("history.csv" in n for n in notes) and "history.csv" in (out / "summary.md").read_text()


def test_gallery_shows_the_original_images_up_to_its_cap(tmp_path, monkeypatch):
    from imgai import plots
    from imgai.config import EvalConfig

    paths = []
    for i in range(4):
        path = tmp_path / f"big{i}.png"
        Image.fromarray(np.full((300, 400, 3), 50 * i, np.uint8)).save(path)  # larger than the model's 32 px
        paths.append(str(path))
    labels = np.array([0, 0, 1, 2])
    probs = np.array([[0.0001, 0.99985, 0.00005], [0.3, 0.6, 0.1], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7]])
    metrics = compute_metrics(probs, labels, CLASSES)
    metrics.update(
        class_names=CLASSES,
        model="runs/r/best.keras",
        model_sha256="ab" * 32,
        data="d/test",
        imgai_version="0",
        keras_version="3",
        backend="tensorflow",
        timestamp="now",
    )
    shown = {}

    def record(images, captions, path, title):
        shown.update(images=images, captions=captions, title=title)
        return path

    monkeypatch.setattr(plots, "plot_gallery", record)
    info = ModelInfo(tuple(CLASSES), (32, 32), "rgb")
    write_report(tmp_path / "a", metrics, paths, labels, probs, info, gallery_size=2, log=lambda _m: None)
    assert len(shown["images"]) == 2 and shown["images"][0].shape[:2] == (180, 240)  # the file, not 32 px
    first = shown["captions"][0]
    assert "true: cat <0.1%" in first and "predicted: dog >99.9%" in first and "100%" not in first
    assert "2 of 3 wrong" in shown["title"] and "eval.gallery_size" in shown["title"]
    notes = []
    written = write_report(
        tmp_path / "b", metrics, paths, labels, probs, info, gallery_size=0, log=notes.append
    )
    assert "misclassified.png" not in {p.name for p in written} and any(
        "gallery_size is 0" in n for n in notes
    )
    assert EvalConfig().gallery_size == 16
    assert "misclassified.png" in EvalConfig.model_fields["gallery_size"].description
    with pytest.raises(ValueError):
        EvalConfig(gallery_size=-1)
