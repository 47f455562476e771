"""End to end, as a user would: eval reports and the quality gate, predict at scale, explain.

Training and the exit-code checks run ``imgai`` in a subprocess; the other commands run in this
process through click's runner (same code, same exit codes), which saves a TensorFlow start-up
per call.
"""

import csv
import io
import json
import shutil

import pytest
from PIL import Image

from conftest import run_imgai

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]
REPORT = {
    "metrics.json",
    "per_class.csv",
    "confusion_matrix.csv",
    "predictions.csv",
    "summary.md",
    "confusion_matrix.png",
    "confusion_matrix_normalized.png",
    "training_curves.png",
    "reliability.png",
    "risk_coverage.png",
}


def clean(result):
    return "Traceback" not in result.stderr + result.stdout


class _Result:
    def __init__(self, click_result):
        self.returncode = click_result.exit_code
        self.stdout = click_result.stdout
        self.stderr = click_result.stderr
        if click_result.exception is not None and not isinstance(click_result.exception, SystemExit):
            raise click_result.exception


def imgai(*args, cwd, input=None):
    """Run the CLI in this process, in ``cwd``."""
    import os

    from click.testing import CliRunner

    from imgai.cli import cli

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return _Result(CliRunner().invoke(cli, list(args), input=input, prog_name="imgai"))
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def project(tmp_path_factory, split_dataset):
    work = tmp_path_factory.mktemp("evalproject")
    result = run_imgai(
        "train", f"data.root={split_dataset}", "train.epochs=2", "--name", "m", *TINY, cwd=work
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return work


@pytest.mark.slow
def test_eval_writes_the_full_report(project):
    result = imgai("eval", "--run", "m", cwd=project)
    assert result.returncode == 0, result.stderr
    run = project / "runs" / "m" / "eval" / "test"
    assert REPORT <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "loss",
        "accuracy",
        "top2_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "per_class",
        "confusion_matrix",
        "num_images",
        "num_skipped",
        "class_names",
        "model",
        "model_sha256",
        "data",
        "imgai_version",
        "keras_version",
        "backend",
        "timestamp",
        "ece",
        "brier",
        "nll",
        "calibration",
        "intervals",
        "selective",
    ):
        assert key in metrics, key
    assert len(metrics["model_sha256"]) == 64 and metrics["num_images"] == 12
    low, high = metrics["intervals"]["metrics"]["accuracy"]
    assert low <= metrics["accuracy"] <= high and "recall_interval" in metrics["per_class"]["circle"]
    assert "ECE" in result.stdout and "bootstrap interval" in result.stdout
    # The same split scored again: a second report beside the first, eval/latest names it.
    again = imgai("eval", "--run", "m", cwd=project)
    assert again.returncode == 0 and (run / "metrics.json").is_file()
    assert (run.parent / "test-2" / "metrics.json").is_file()
    assert (run.parent / "latest").read_text().strip() == "test-2"
    assert "runs/m/eval/test-2/" in again.stdout
    assert sum(map(sum, metrics["confusion_matrix"])) == 12
    wrong = [
        r for r in csv.DictReader((run / "predictions.csv").open()) if r["true_class"] != r["predicted_class"]
    ]
    assert (run / "misclassified.png").is_file() == bool(wrong)
    for png in run.glob("*.png"):
        with Image.open(png) as img:
            assert img.format == "PNG"
    assert "F1" in result.stdout and "Wrote" in result.stdout and "gate" not in result.stdout.lower()


@pytest.mark.slow
def test_gate_exit_codes(project, tmp_path):
    failed = run_imgai(
        "eval",
        "--run",
        "m",
        "--fail-under",
        "accuracy=1.01",
        "--output-dir",
        str(tmp_path / "r1"),
        cwd=project,
    )
    assert failed.returncode == 1 and clean(failed)
    assert "FAILED  accuracy" in failed.stdout and ">= 1.0100" in failed.stdout
    assert (tmp_path / "r1" / "metrics.json").is_file()  # the report is written even when the gate fails
    assert json.loads((tmp_path / "r1" / "metrics.json").read_text())["gate"]["passed"] is False
    assert "FAILED" in (tmp_path / "r1" / "summary.md").read_text()

    passed = imgai(
        "eval",
        "--run",
        "m",
        "--fail-under",
        "accuracy=0",
        "--min-class-recall",
        "0",
        "--output-dir",
        str(tmp_path / "r2"),
        cwd=project,
    )
    assert passed.returncode == 0, passed.stderr
    assert "PASSED  accuracy" in passed.stdout and passed.stdout.count("PASSED  recall[") == 3

    typo = run_imgai("eval", "--run", "m", "--fail-undr", "accuracy=0", cwd=project)
    assert typo.returncode == 2 and clean(typo)
    unknown = imgai("eval", "--run", "m", "--fail-under", "acc=0.9", cwd=project)
    assert unknown.returncode == 2 and clean(unknown) and len(unknown.stderr.strip().splitlines()) == 1
    assert "unknown metric 'acc'" in unknown.stderr and "f1_macro" in unknown.stderr


@pytest.mark.slow
def test_library_words_become_flags(project, tmp_path):
    wrong_way = imgai("eval", "--run", "m", "--fail-under", "loss=0.5", cwd=project)
    assert wrong_way.returncode == 2 and "use --fail-over loss=VALUE" in wrong_way.stderr
    no_base = imgai("eval", "--run", "m", "--max-drop", "accuracy=0.01", cwd=project)
    assert no_base.returncode == 2 and "--max-drop compares with a baseline: add --baseline" in no_base.stderr
    missing = imgai("eval", "--model", str(tmp_path / "none.keras"), cwd=project)
    assert missing.returncode == 2 and "run folder as --model" in missing.stderr
    no_data = imgai("eval", "--run", "m", "--data", str(tmp_path / "nothing"), cwd=project)
    assert no_data.returncode == 2 and "per class as --data" in no_data.stderr
    for result in (wrong_way, no_base, missing, no_data):
        assert "`" not in result.stderr and clean(result)


@pytest.mark.slow
def test_runs_are_found_under_output_dir(project, tmp_path):
    # --runs-dir left out: output.dir of --config says where runs live (here: the project's).
    config = tmp_path / "where.yaml"
    config.write_text(f"output:\n  dir: {project / 'runs'}\n")
    found = imgai("eval", "-c", str(config), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert f"Scoring {project / 'runs'}" in found.stdout
    lost = imgai("eval", "--output-dir", str(tmp_path), cwd=tmp_path)  # default output.dir: runs/
    assert lost.returncode == 2 and "no trained model found under 'runs/'" in lost.stderr


@pytest.mark.slow
def test_baseline_and_config_gate(project, split_dataset, tmp_path):
    from imgai.runs import latest_eval_dir

    if latest_eval_dir(project / "runs" / "m", "test") is None:
        assert imgai("eval", "--run", "m", cwd=project).returncode == 0
    base = latest_eval_dir(project / "runs" / "m", "test") / "metrics.json"
    baseline = tmp_path / "baseline.json"
    shutil.copy(base, baseline)
    same = imgai(
        "eval",
        "--run",
        "m",
        "--baseline",
        str(baseline),
        "--max-drop",
        "accuracy=0",
        "--output-dir",
        str(tmp_path / "r"),
        cwd=project,
    )
    assert same.returncode == 0 and "minus max drop 0" in same.stdout  # same model, same data: no drop
    assert "paired test not possible" in same.stdout  # a metrics.json alone: the bound decides
    # The run folder as baseline: its test report's predictions.csv, so a paired test on the same images
    paired = imgai(
        "eval", "--run", "m", "--baseline", "runs/m", "--max-drop", "accuracy=0", "--max-drop", "f1_macro=0",
        "--output-dir", str(tmp_path / "p"), cwd=project,
    )  # fmt: skip
    assert paired.returncode == 0, paired.stderr
    assert "difference +0.0000" in paired.stdout and "p=1 (exact McNemar" in paired.stdout
    assert "p=1 (paired bootstrap)" in paired.stdout
    other = imgai(
        "eval", "--run", "m", "--data", str(split_dataset / "val"), "--baseline", "runs/m",
        "--max-drop", "accuracy=0", "--output-dir", str(tmp_path / "o"), cwd=project,
    )  # fmt: skip
    assert other.returncode == 2 and "different images" in other.stderr and clean(other)
    # found after scoring, so the line naming the model comes first; the mistake is one line
    assert [line for line in other.stderr.splitlines() if not line.startswith("Using ")] == [
        other.stderr.strip().splitlines()[-1]
    ]
    for flag in ("--min-confidence", "--target-accuracy", "--significance"):
        bad = imgai("eval", "--run", "m", flag, "1.5", cwd=project)
        assert bad.returncode == 2 and flag in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    target = imgai(
        "eval", "--run", "m", "--target-accuracy", "0.5", "--min-confidence", "0.4",
        "--output-dir", str(tmp_path / "t"), cwd=project,
    )  # fmt: skip
    assert target.returncode == 0, target.stderr
    assert "target accuracy 50.0%" in target.stdout and "validation split" in target.stdout
    assert "min confidence 0.4 (infer.min_confidence)" in target.stdout

    gate = tmp_path / "gate.yaml"
    gate.write_text("eval:\n  fail_under:\n    accuracy: 1.01\n")
    from_config = imgai(
        "eval", "--run", "m", "-c", str(gate), "--output-dir", str(tmp_path / "r"), cwd=project
    )
    assert from_config.returncode == 1 and "FAILED  accuracy" in from_config.stdout
    flag_wins = imgai(
        "eval",
        "--run",
        "m",
        "-c",
        str(gate),
        "--fail-under",
        "accuracy=0",
        "--output-dir",
        str(tmp_path / "r"),
        cwd=project,
    )
    assert flag_wins.returncode == 0 and "PASSED  accuracy" in flag_wins.stdout
    gate.write_text("eval:\n  fail_under:\n    acuracy: 0.5\n")
    bad = imgai("eval", "--run", "m", "-c", str(gate), cwd=project)
    assert bad.returncode == 2 and "eval.fail_under" in bad.stderr and clean(bad)


@pytest.mark.slow
def test_predict_folder_as_csv_with_a_non_image(project, split_dataset, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(split_dataset / "test", folder)
    (folder / "circle" / "readme.txt").write_text(
        "not an image"
    )  # not an image name: left out, as in training
    (folder / "circle" / "broken.png").write_text("not an image")  # an image name that cannot be read
    result = imgai("predict", str(folder), "--format", "csv", "-k", "2", cwd=project)
    assert result.returncode == 1 and clean(result)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 13  # 12 images + the broken one
    good = [r for r in rows if not r["error"]]
    assert len(good) == 12 and all(r["class_1"] and r["probability_2"] for r in good)
    assert [r["path"] for r in rows if r["error"]] == [str(folder / "circle" / "broken.png")]
    assert "1 of 13" in result.stderr


@pytest.mark.slow
def test_predict_stdin_globs_and_output_file(project, split_dataset, tmp_path):
    paths = sorted(str(p) for p in (split_dataset / "test" / "square").glob("*.png"))
    out = tmp_path / "preds.jsonl"
    result = imgai(
        "predict",
        "-",
        str(split_dataset / "test" / "tri*" / "*.png"),
        "--format",
        "jsonl",
        "--output",
        str(out),
        cwd=project,
        input="\n".join(paths) + "\n",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in lines[:4]] == paths and len(lines) == 8
    assert all("predictions" in r for r in lines) and result.stdout == ""
    assert not list(tmp_path.glob(".*tmp*"))
    missing = imgai("predict", str(paths[0]), "--output", str(tmp_path / "no" / "x.csv"), cwd=project)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_predict_equals_eval(project, split_dataset, tmp_path):
    """One code path: the probabilities predict prints are those eval scored, image by image."""
    scored = imgai(
        "eval",
        "--run",
        "m",
        "--data",
        str(split_dataset / "test"),
        "--output-dir",
        str(tmp_path),
        cwd=project,
    )
    assert scored.returncode == 0, scored.stderr
    from_eval = {r["path"]: r for r in csv.DictReader((tmp_path / "predictions.csv").open())}
    predicted = imgai("predict", str(split_dataset / "test"), "--format", "json", "-k", "3", cwd=project)
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)
    # 'unknown' below the threshold, the top-k still there; a threshold outside (0, 1): one line, exit 2
    unsure = imgai(
        "predict", str(split_dataset / "test"), "--format", "csv", "--min-confidence", "0.99",
        "--unknown-label", "not-sure", cwd=project,
    )  # fmt: skip
    answers = list(csv.DictReader(io.StringIO(unsure.stdout)))
    assert unsure.returncode == 0 and len(answers) == 12 and all(r["class_1"] for r in answers)
    assert {r["answer"] for r in answers} <= {"not-sure", *from_eval_classes(from_eval)}
    assert all((r["answer"] == "not-sure") == (float(r["probability_1"]) < 0.99) for r in answers)
    for bad in (["--min-confidence", "0"], ["--min-confidence", "1"], ["--min-confidence", "-0.5"],
                ["--min-confidence", "0.5", "--unknown-label", "circle"]):  # fmt: skip
        refused = imgai("predict", str(split_dataset / "test"), *bad, cwd=project)
        assert refused.returncode == 2 and bad[-2] in refused.stderr
        errors = [line for line in refused.stderr.splitlines() if not line.startswith("Using ")]
        assert len(errors) == 1 and errors[0].startswith("Error:") and clean(refused)
    assert {r["path"] for r in rows} == set(from_eval) and len(rows) == 12
    for row in rows:
        ev = from_eval[row["path"]]
        assert row["predictions"][0]["class"] == ev["predicted_class"]
        for p in row["predictions"]:
            assert p["probability"] == pytest.approx(float(ev[f"p_{p['class']}"]), abs=2e-6)


def from_eval_classes(rows: dict) -> set:
    return {r["true_class"] for r in rows.values()}


@pytest.mark.slow
def test_explain_command(project, split_dataset, tmp_path):
    image = next((split_dataset / "test" / "triangle").glob("*.png"))
    result = imgai("explain", str(image), "--run", "m", "--output-dir", str(tmp_path), cwd=project)
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"{image.stem}_gradcam.png"
    assert out.is_file() and "predicted" in result.stdout and str(out) in result.stdout
    named = imgai(
        "explain", str(image), "--run", "m", "--class", "circle", "-o", str(tmp_path / "c.png"), cwd=project
    )
    assert named.returncode == 0, named.stderr
    assert "explained 'circle'" in named.stdout or "predicted circle" in named.stdout
    two = imgai("explain", str(image), str(image), "-o", str(tmp_path / "x.png"), "--run", "m", cwd=project)
    assert two.returncode == 2 and "--output-dir" in two.stderr and clean(two)
    bad = imgai(
        "explain", str(image), "--run", "m", "--class", "hexagon", "-o", str(tmp_path / "h.png"), cwd=project
    )
    assert bad.returncode == 2 and "hexagon" in bad.stderr and clean(bad)
