import os

import pytest

from imgai.errors import ImgaiError
from imgai.runs import atomic_write_text, create_run_dir, latest_run, resolve_model_path


def test_runs_are_auto_numbered(tmp_path):
    assert create_run_dir(tmp_path).name == "run1"
    assert create_run_dir(tmp_path).name == "run2"
    (tmp_path / "run7").mkdir()
    assert create_run_dir(tmp_path).name == "run8"


def test_named_run_is_never_overwritten(tmp_path):
    first = create_run_dir(tmp_path, "exp")
    (first / "best.keras").write_text("keep me")
    with pytest.raises(ImgaiError, match="already exists"):
        create_run_dir(tmp_path, "exp")
    assert (first / "best.keras").read_text() == "keep me"


def test_bad_run_name(tmp_path):
    with pytest.raises(ImgaiError, match="not allowed"):
        create_run_dir(tmp_path, "../escape")


def test_latest_run_is_the_newest_best_model(tmp_path):
    with pytest.raises(ImgaiError, match="no trained model"):
        latest_run(tmp_path)
    for i, name in enumerate(("a", "b", "c")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "best.keras").write_text("x")
        os.utime(tmp_path / name / "best.keras", (1000 + i, 1000 + [1, 3, 2][i]))
    (tmp_path / "d").mkdir()  # a run without a model is not a candidate
    assert latest_run(tmp_path).name == "b"
    assert resolve_model_path(None, None, tmp_path) == tmp_path / "b" / "best.keras"
    assert resolve_model_path(None, "c", tmp_path) == tmp_path / "c" / "best.keras"
    assert resolve_model_path(str(tmp_path / "a"), None, tmp_path) == tmp_path / "a" / "best.keras"
    with pytest.raises(ImgaiError, match="has no best.keras"):
        resolve_model_path(None, "d", tmp_path)
    with pytest.raises(ImgaiError, match="not found"):
        resolve_model_path(str(tmp_path / "zzz.keras"), None, tmp_path)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "one")
    atomic_write_text(tmp_path / "f.txt", "two")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    assert (tmp_path / "f.txt").read_text() == "two"


def test_eval_reports_are_numbered_never_overwritten(tmp_path):
    from imgai.runs import create_eval_dir, latest_eval_dir

    first = create_eval_dir(tmp_path, "test")
    (first / "metrics.json").write_text("{}")
    second = create_eval_dir(tmp_path, "test")
    (second / "metrics.json").write_text("{}")
    val = create_eval_dir(tmp_path, "val")
    assert [first.name, second.name, val.name] == ["test", "test-2", "val"]
    assert latest_eval_dir(tmp_path) is None  # val has no report yet
    (val / "metrics.json").write_text("{}")
    assert (tmp_path / "eval" / "latest").read_text().strip() == "val"
    assert latest_eval_dir(tmp_path) == val and latest_eval_dir(tmp_path, "test") == second
    assert create_eval_dir(tmp_path, "my holdout/photos").name == "my-holdout-photos"
