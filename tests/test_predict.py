"""Prediction at scale: path expansion, streaming in chunks, output formats."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from imgai.modelfile import ModelInfo
from imgai.predict import (
    PredictionRow,
    collect_paths,
    format_rows,
    ignored_note,
    iter_prediction_rows,
    iter_predictions,
    write_rows,
)

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture()
def tree(tmp_path):
    for rel in ("a/one.png", "a/b/two.png", "a/b/three.jpg", "c/four.png"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), len(rel) * 9, np.uint8)).save(path)
    (tmp_path / "a" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("not an image")  # not an image name: folders skip it
    (tmp_path / "a" / "notes.png").write_text("not an image")  # an image name that cannot be read
    return tmp_path


def test_collect_paths_folders_globs_and_problems(tree):
    files, problems = collect_paths(
        [str(tree / "a"), str(tree / "c" / "four.png"), str(tree / "missing.png")]
    )
    names = [p.replace(str(tree) + "/", "") for p in files]
    assert names == ["a/b/three.jpg", "a/b/two.png", "a/notes.png", "a/one.png", "c/four.png"]
    assert collect_paths([str(tree / "a" / "notes.txt")])[0] == [str(tree / "a" / "notes.txt")]  # named: kept
    assert problems == [(str(tree / "missing.png"), "no such file or folder")]

    files, problems = collect_paths([str(tree / "**" / "*.png")])  # quoted glob, ** recursive
    assert sorted(p.replace(str(tree) + "/", "") for p in files) == [
        "a/b/two.png",
        "a/notes.png",
        "a/one.png",
        "c/four.png",
    ]
    files, problems = collect_paths([str(tree / "*.gif")])
    assert files == [] and problems[0][1] == "no file matches this pattern"


def test_folders_and_patterns_leave_out_non_images_with_a_note(tree):
    ignored: list[str] = []
    files, problems = collect_paths([str(tree / "a"), str(tree / "a" / "*")], ignored)
    assert not problems and str(tree / "a" / "notes.txt") not in files
    assert ignored == [str(tree / "a" / "notes.txt")] * 2  # once from the folder, once from the pattern
    assert ignored_note(ignored) == "Skipped 2 file(s) that are not images (.txt 2): notes.txt, notes.txt"
    assert ignored_note([]) is None


@pytest.fixture(scope="module")
def model():
    from imgai.quiet import import_keras

    keras = import_keras()
    from imgai.config import ModelConfig
    from imgai.models import create_model

    keras.utils.set_random_seed(0)
    return create_model(ModelConfig(filters=[4], dense_units=4), (32, 32), 3, 3)


META = ModelInfo(tuple(CLASSES), (32, 32), "rgb")


def test_streaming_keeps_order_and_reports_bad_files(model, tree):
    inputs = [str(tree / "a"), str(tree / "c"), str(tree / "gone.png")]
    rows = list(iter_prediction_rows(model, META, inputs, batch_size=1))
    assert [r.path.replace(str(tree) + "/", "") for r in rows] == [
        "a/b/three.jpg",
        "a/b/two.png",
        "a/notes.png",
        "a/one.png",
        "c/four.png",
        str(tree / "gone.png").replace(str(tree) + "/", ""),
    ]
    assert [r.error is None for r in rows] == [True, True, False, True, True, False]
    assert "cannot read image" in rows[2].error and "object at 0x" not in rows[2].error

    # Small chunks (2 images) give the same numbers as one big chunk.
    files, _ = collect_paths([str(tree / "a"), str(tree / "c")])
    small = list(iter_predictions(model, META, files, batch_size=1, chunk_batches=2))
    big = list(iter_predictions(model, META, files, batch_size=8, chunk_batches=8))
    assert len(small) == 3 and len(big) == 1
    np.testing.assert_allclose(np.concatenate([p for _, p in small]), big[0][1], rtol=1e-5, atol=1e-6)
    assert sum(len(d.skipped) for d, _ in small) == 1


def test_output_formats_agree():
    rows = [
        PredictionRow("x.png", probabilities=np.array([0.1, 0.7, 0.2])),
        PredictionRow("bad.png", error="cannot read image: broken"),
    ]
    as_json = json.loads(format_rows(rows, CLASSES, 2, "json"))
    assert as_json[0]["predictions"] == [
        {"class": "square", "probability": 0.7},
        {"class": "triangle", "probability": 0.2},
    ]
    assert as_json[1] == {"path": "bad.png", "error": "cannot read image: broken"}
    lines = [json.loads(line) for line in format_rows(rows, CLASSES, 2, "jsonl").splitlines()]
    assert lines == as_json
    table = list(csv.DictReader(io.StringIO(format_rows(rows, CLASSES, 2, "csv"))))
    assert (
        table[0]["class_1"] == "square"
        and table[0]["probability_2"] == "0.200000"
        and table[0]["error"] == ""
    )
    assert table[1]["class_1"] == "" and table[1]["error"].startswith("cannot read")
    assert (
        format_rows(rows, CLASSES, 1, "table")
        == "x.png: square 70.0%\nbad.png: ERROR cannot read image: broken\n"
    )
    assert json.loads(format_rows([], CLASSES, 1, "json")) == []
    buffer = io.StringIO()
    assert write_rows(iter(rows), CLASSES, 3, "jsonl", buffer) == (2, 1)
