"""End to end, as a user would run it: the imgai CLI in subprocesses on tiny generated images."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_imgai

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]


def no_traceback(result):
    return "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, split_dataset):
    """A project folder with a config pointing at the tiny data set."""
    work = tmp_path_factory.mktemp("project")
    (work / "tiny.yaml").write_text(f"data:\n  root: {split_dataset}\ntrain:\n  epochs: 1\n")
    return work


@pytest.fixture(scope="module")
def trained(workdir):
    result = run_imgai(
        "train", "--config", "tiny.yaml", "train.epochs=2", "--name", "e2e", *TINY, cwd=workdir
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return workdir, result


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from imgai.cli import cli\n"
        "for args in (['--help'], ['train', '--help'], ['config', 'show']):\n"
        "    try:\n"
        "        cli.main(args, prog_name='imgai', standalone_mode=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY' if {'tensorflow', 'keras', 'jax', 'torch'} & set(sys.modules) else 'LIGHT')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LIGHT"
    assert "imgai train" in out.stdout  # the help teaches by example


@pytest.mark.slow
def test_train_writes_the_run_folder(trained):
    workdir, result = trained
    run = workdir / "runs" / "e2e"
    for name in ("config.yaml", "best.keras", "last.keras", "history.csv", "classes.txt"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp*")), "temporary files left behind"
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(history[0])
    assert (run / "classes.txt").read_text().split() == ["circle", "square", "triangle"]
    out = result.stdout
    assert "circle" in out and "12" in out  # classes with their counts
    assert "Best epoch" in out and str(run / "best.keras").replace(str(workdir) + "/", "") in out
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()  # framework noise hidden


@pytest.mark.slow
def test_resolved_config_reproduces_the_run(trained, tmp_path):
    workdir, _ = trained
    saved = workdir / "runs" / "e2e" / "config.yaml"
    result = run_imgai("config", "check", str(saved), cwd=tmp_path)  # from another folder
    assert result.returncode == 0, result.stderr
    show = run_imgai("config", "show", "-c", str(saved), cwd=tmp_path)
    assert "epochs: 2" in show.stdout and "filters: [8, 16]" in show.stdout
    root = __import__("yaml").safe_load(show.stdout)["data"]["root"]
    assert Path(root).is_absolute() and Path(root).is_dir()  # the data path, absolute, from any folder
    assert Path(__import__("yaml").safe_load(saved.read_text())["data"]["root"]).is_absolute()


@pytest.mark.slow
def test_predict_and_eval_with_no_flags(trained, split_dataset):
    workdir, _ = trained
    image = next((split_dataset / "test" / "square").glob("*.png"))
    result = run_imgai("predict", str(image), cwd=workdir)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(str(image)) and line.count("%") == 3  # top-3 by default
    # Which model answered, its run and its score: one line on stderr, stdout stays data.
    using = "Using runs/e2e/best.keras (run e2e, best val_accuracy "
    assert [x for x in result.stderr.splitlines() if x.startswith("Using")][0].startswith(using)

    result = run_imgai("eval", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert using in result.stderr
    metrics = json.loads((workdir / "runs" / "e2e" / "metrics.json").read_text())
    assert metrics["num_images"] == 12  # the test split
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0
    assert "accuracy" in result.stdout and "triangle" in result.stdout


@pytest.mark.slow
def test_predict_formats_and_plain_keras_agree(trained, split_dataset):
    workdir, _ = trained
    folder = split_dataset / "test" / "circle"
    as_json = run_imgai("predict", str(folder), "--format", "json", "-k", "2", cwd=workdir)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert len(rows) == 4 and all(len(r["predictions"]) == 2 for r in rows)
    as_csv = run_imgai("predict", str(folder), "--format", "csv", cwd=workdir)
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["path"] for r in table] == [r["path"] for r in rows]
    assert [r["class_1"] for r in table] == [r["predictions"][0]["class"] for r in rows]

    # The checkpoint alone, in a Python that never imports imgai, predicts the same classes.
    code = (
        "import json, sys, numpy as np, keras\n"
        "from PIL import Image\n"
        f"m = keras.saving.load_model({str(workdir / 'runs' / 'e2e' / 'best.keras')!r})\n"
        "paths = json.loads(sys.stdin.read())\n"
        "x = np.stack([np.asarray(Image.open(p).convert('RGB'), dtype='float32') for p in paths])\n"
        "names = ['circle', 'square', 'triangle']\n"
        "print(json.dumps([names[i] for i in m.predict(x, verbose=0).argmax(1)]))\n"
        "assert not any(k.startswith('imgai') for k in sys.modules)\n"
    )
    plain = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([r["path"] for r in rows]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout.strip().splitlines()[-1]) == [r["predictions"][0]["class"] for r in rows]


@pytest.mark.slow
def test_predict_into_a_pipe_closed_early_ends_quietly(trained, split_dataset):
    # `imgai predict DIR --format csv | head -2`: more rows than a pipe buffers, reader gone after 2.
    workdir, _ = trained
    image = str(next((split_dataset / "test" / "circle").glob("*.png")))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgai", "predict", "-", "--format", "csv"],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proc.stdin.write((image + "\n") * 3000)
    proc.stdin.close()
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=300) in (0, 141)
    assert head[0].startswith("path,class_1") and head[1].startswith(image)
    assert [line for line in stderr.splitlines() if not line.startswith("Using ")] == [], stderr


@pytest.mark.slow
def test_predict_reports_bad_files_and_continues(trained, split_dataset, tmp_path):
    workdir, _ = trained
    good = next((split_dataset / "test" / "circle").glob("*.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = run_imgai(
        "predict", str(good), str(broken), str(tmp_path / "missing.jpg"), "--format", "json", cwd=workdir
    )
    assert result.returncode == 1
    assert no_traceback(result)
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)}
    assert "predictions" in rows[good.name]
    assert "cannot read image" in rows["broken.jpg"]["error"]
    assert "no such file" in rows["missing.jpg"]["error"]
    assert "2 of 3" in result.stderr


@pytest.mark.slow
def test_predict_with_a_wrong_model_file(trained, tmp_path):
    workdir, _ = trained
    fake = tmp_path / "fake.keras"
    fake.write_text("definitely not a model")
    result = run_imgai("predict", "x.jpg", "--model", str(fake), cwd=workdir)
    assert result.returncode == 2 and no_traceback(result)
    assert result.stderr.strip().startswith("Error:") and "not a Keras model file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # the model is named once it loads


@pytest.mark.slow
def test_eval_on_a_folder_with_other_classes(trained, tmp_path, split_dataset):
    workdir, _ = trained
    other = tmp_path / "other"
    shutil.copytree(split_dataset / "test" / "circle", other / "circle")
    shutil.copytree(split_dataset / "test" / "square", other / "hexagon")
    result = run_imgai("eval", "--data", str(other), cwd=workdir)
    assert result.returncode == 2 and no_traceback(result)
    assert "hexagon" in result.stderr and "differ from the model's classes" in result.stderr


@pytest.mark.slow
def test_eval_on_a_chosen_folder(trained, split_dataset):
    workdir, _ = trained
    result = run_imgai("eval", "--run", "e2e", "--data", str(split_dataset / "val"), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads((workdir / "runs" / "e2e" / "metrics.json").read_text())["num_images"] == 12


def test_typo_in_key_exits_2_and_names_the_fix(workdir):
    result = run_imgai("train", "--config", "tiny.yaml", "train.epoch=3", cwd=workdir)
    assert result.returncode == 2 and no_traceback(result)
    assert "train.epochs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_missing_data_folder_exits_2_with_one_line(workdir):
    result = run_imgai(
        "train", "--config", "tiny.yaml", "data.root=/no/such/folder", "--name", "never", cwd=workdir
    )
    assert result.returncode == 2 and no_traceback(result)
    assert len(result.stderr.strip().splitlines()) == 1 and "/no/such/folder" in result.stderr
    assert not (workdir / "runs" / "never").exists()  # nothing created for a run that could not start


@pytest.mark.slow
def test_existing_run_name_is_refused(trained):
    workdir, _ = trained
    before = (workdir / "runs" / "e2e" / "best.keras").stat().st_mtime_ns
    result = run_imgai("train", "--config", "tiny.yaml", "--name", "e2e", *TINY, cwd=workdir)
    assert result.returncode == 2 and "already exists" in result.stderr and no_traceback(result)
    assert (workdir / "runs" / "e2e" / "best.keras").stat().st_mtime_ns == before


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_training_completes(tmp_path, split_dataset):
    data = tmp_path / "data"
    shutil.copytree(split_dataset, data)
    (data / "train" / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF garbage")
    # Silent data problems are said: a class of .webp photos trains, an empty class and a stray
    # file are each one warning line.
    from PIL import Image

    for png in data.glob("*/triangle/*.png"):
        Image.open(png).save(png.with_suffix(".webp"), lossless=True)
        png.unlink()
    (data / "train" / "circle" / "notes.txt").write_text("labels checked by Ann")
    for split in ("train", "val", "test"):
        (data / split / "hexagon").mkdir()
    result = run_imgai("train", f"data.root={data}", "train.epochs=1", "--name", "c", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    skipped = (tmp_path / "runs" / "c" / "skipped.txt").read_text()
    assert "corrupt.jpg" in skipped
    assert "Skipped 1 unreadable file" in result.stdout
    assert (tmp_path / "runs" / "c" / "best.keras").is_file()
    table = {
        line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.startswith("  ")
    }
    assert table["triangle"][:2] == ["12", "4"]  # the webp class: every training and val image
    warnings = [line for line in result.stdout.splitlines() if line.startswith("Warning:")]
    assert sum("hexagon have no training images" in w for w in warnings) == 1
    assert sum("ignored for their extension (.txt 1)" in w for w in warnings) == 1


@pytest.mark.slow
def test_validation_split_and_auto_numbered_runs(tmp_path, flat_dataset):
    args = [f"data.root={flat_dataset}", "data.validation_split=0.2", "train.epochs=1", *TINY]
    first = run_imgai("train", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "val" in first.stdout and (tmp_path / "runs" / "run1" / "best.keras").is_file()
    # no test split: eval falls back to the validation split (20 % of 30 = 6 images)
    result = run_imgai("eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "runs" / "run1" / "metrics.json").read_text())["num_images"] == 6


def test_eval_and_predict_without_any_run(tmp_path):
    for args in (["eval"], ["predict", "x.jpg"]):
        result = run_imgai(*args, cwd=tmp_path)
        assert result.returncode == 2 and "no trained model" in result.stderr and no_traceback(result)


def test_config_commands(tmp_path):
    shown = run_imgai("config", "show", cwd=tmp_path)
    assert shown.returncode == 0 and "epochs: 10" in shown.stdout and "#" in shown.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch_size: -1\n")
    result = run_imgai("config", "check", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "data.batch_size=-1" in result.stderr and no_traceback(result)
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 2\n")
    assert run_imgai("config", "check", str(good), cwd=tmp_path).returncode == 0
    resolved = run_imgai("config", "show", "-c", str(good), "train.optimizer=sgd", cwd=tmp_path)
    assert "epochs: 2" in resolved.stdout and "optimizer: sgd" in resolved.stdout


def test_data_sample_command(tmp_path):
    result = run_imgai(
        "data", "sample", str(tmp_path / "s"), "--per-class", "4", "--size", "32", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "s" / "train" / "circle").glob("*.jpg"))) == 4
    again = run_imgai("data", "sample", str(tmp_path / "s"), cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


@pytest.mark.slow
def test_a_model_error_before_the_first_epoch_leaves_no_run_folder(tmp_path, split_dataset):
    result = run_imgai(
        "train",
        f"data.root={split_dataset}",
        "model.filters=[8,8,8,8,8]",
        "data.image_size=[32,32]",
        "--name",
        "small",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and no_traceback(result)
    assert "too small" in result.stderr
    assert not (tmp_path / "runs" / "small").exists()


@pytest.mark.slow
def test_backbone_from_a_weights_file_with_fine_tune_stage_end_to_end(tmp_path, split_dataset):
    keras = pytest.importorskip("keras")
    weights = tmp_path / "mnv3s.weights.h5"
    keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    ).save_weights(weights)
    result = run_imgai(
        "train",
        f"data.root={split_dataset}",
        "model.name=mobilenetv3small",
        f"model.weights={weights}",
        "data.image_size=[32,32]",
        "data.batch_size=12",
        "train.epochs=2",
        "train.fine_tune_after=1",
        "--name",
        "bb",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Fine-tune stage from epoch 2" in result.stdout
    history = list(csv.DictReader((tmp_path / "runs" / "bb" / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert float(history[1]["learning_rate"]) < float(
        history[0]["learning_rate"]
    )  # lower rate when fine-tuning
    predicted = run_imgai("predict", str(split_dataset / "test" / "circle"), "--format", "json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)) == 4


def test_ctrl_c_says_its_line_once_and_a_closed_pipe_ends_quietly(capsys):
    from imgai.cli import _handle_errors

    def raising(exc):
        @_handle_errors
        def command():
            raise exc

        with pytest.raises(SystemExit) as info:
            command()
        return info.value.code, capsys.readouterr().err

    assert raising(KeyboardInterrupt()) == (130, "Interrupted.\n")
    reported = KeyboardInterrupt()
    reported.imgai_reported = True  # training printed "Interrupted with N epoch(s) saved. Continue with: ..."
    assert raising(reported) == (130, "")
    assert raising(BrokenPipeError()) == (141, "")


def test_help_teaches_and_config_check_checks_each_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from imgai.cli import cli

    runner = CliRunner()
    top = runner.invoke(cli, ["--help"], prog_name="imgai").output
    assert "_IMGAI_COMPLETE=bash_source imgai" in top  # shell completion is documented
    for group in ([], ["data"], ["config"], ["data", "cache"]):
        shown = runner.invoke(cli, [*group, "--help"], prog_name="imgai").output
        commands = shown.split("Commands:")[1].splitlines()
        assert commands and not [line for line in commands if line.rstrip().endswith("...")], shown
    for command in (["config", "show"], ["config", "check"], ["data", "sample"]):
        assert "Examples:" in runner.invoke(cli, [*command, "--help"]).output, command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "good.yaml").write_text("data:\n  root: photos\n")
    (tmp_path / "nodata.yaml").write_text("train:\n  epochs: 2\n")
    (tmp_path / "bad.yaml").write_text("data:\n  batch_size: -1\n")
    result = runner.invoke(cli, ["config", "check", "good.yaml", "bad.yaml", "nodata.yaml", "train.epochs=3"])
    assert result.exit_code == 2
    assert "OK: good.yaml is a valid imgai config." in result.stdout
    assert "OK: nodata.yaml" in result.stdout and "Warning: data.root is not set" in result.stdout
    assert "Error: bad.yaml: invalid config value data.batch_size=-1" in result.stderr
    plain = runner.invoke(cli, ["config", "check", "good.yaml", "data.root=elsewhere"])
    assert plain.exit_code == 0 and "Warning: data.root 'elsewhere' is not a folder here" in plain.stdout
    old_spelling = runner.invoke(cli, ["config", "check", "good.yaml", "--set", "train.epochs=0"])
    assert old_spelling.exit_code == 2 and "train.epochs=0" in old_spelling.stderr

    # PASSED/FAILED coloured on a terminal only, never with NO_COLOR.
    from imgai.cli import _paint

    text = "  PASSED  accuracy\n  FAILED: 1 of 2 check(s) passed"
    assert _paint(text) == text  # pytest's stdout is not a terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert "\x1b[" in _paint(text) and _paint(text).count("PASSED") == 1
    monkeypatch.setenv("NO_COLOR", "1")
    assert _paint(text) == text
