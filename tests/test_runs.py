import os
import zipfile
from pathlib import Path

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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_writes_get_the_umask_mode(tmp_path, umask, mode):
    # Like history.csv (plain open): teammates and CI uploads can read what the umask allows.
    from imgai.runs import atomic_path

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        with atomic_path(tmp_path / "best.keras", suffix=".keras") as tmp:
            tmp.write_bytes(b"x")
        with open(tmp_path / "history.csv", "w") as fh:
            fh.write("epoch\n")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"config.yaml": mode, "best.keras": mode, "history.csv": mode}


def test_run_name_means_the_run_even_beside_a_data_folder_of_that_name(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "flat").mkdir(parents=True)
    (runs / "flat" / "best.keras").write_text("x")
    (tmp_path / "flat" / "circle").mkdir(parents=True)  # a data folder named like the run
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(None, "flat", "runs") == Path("runs") / "flat" / "best.keras"
    (tmp_path / "elsewhere" / "mine").mkdir(parents=True)
    (tmp_path / "elsewhere" / "mine" / "best.keras").write_text("x")
    assert resolve_model_path(None, "elsewhere/mine", "runs") == Path("elsewhere/mine/best.keras")


def test_no_runs_here_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImgaiError) as info:
        resolve_model_path(None, None, None)
    message = info.value.worded({"model_path": "--model", "runs_dir": "--runs-dir"})
    assert f"'runs/' in '{tmp_path}'" in message and "--model" in message and "--runs-dir" in message


def test_describe_model_names_the_run_and_its_score(tmp_path):
    from imgai.resume import RESUME_MEMBER, TrainState, describe_model

    run = tmp_path / "run3"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  monitor: val_loss\n")
    state = TrainState(epoch=15, best_value=0.25, best_epoch=14)
    for name in ("best.keras", "last.keras"):
        with zipfile.ZipFile(run / name, "w") as archive:
            archive.writestr(RESUME_MEMBER, state.to_json())
    assert (
        describe_model(run / "best.keras")
        == f"Using {run}/best.keras (run run3, best val_loss 0.2500 at epoch 14)"
    )
    assert describe_model(run / "last.keras").endswith(
        "(run run3, epoch 15; best val_loss 0.2500 at epoch 14)"
    )
    (tmp_path / "plain.keras").write_text("not a zip")  # no run around it: just the file
    assert describe_model(tmp_path / "plain.keras") == f"Using {tmp_path}/plain.keras"
