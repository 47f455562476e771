"""Quality gate: parsing checks, running them, and the eval section of the config."""

import json

import numpy as np
import pytest

from imgai.config import EvalConfig, load_config, load_eval_section
from imgai.errors import ImgaiError
from imgai.evaluate import eval_settings
from imgai.gate import check_gate, format_results, parse_bounds, run_checks


def spec(**values) -> EvalConfig:
    """A gate as the library takes it: checked like parameters, then validated with its baseline."""
    return eval_settings(None, **values).eval


METRICS = {
    "accuracy": 0.9,
    "loss": 0.3,
    "f1_macro": 0.8,
    "top2_accuracy": 0.97,
    "per_class": {
        "a": {"support": 10, "recall": 0.95, "accuracy": 0.95},
        "b": {"support": 10, "recall": 0.65, "accuracy": 0.65},
        "c": {"support": 0, "recall": None, "accuracy": None},
    },
}


def test_parse_bounds():
    assert parse_bounds(["accuracy=0.9", "f1_macro = 0.85"], "--fail-under") == {
        "accuracy": 0.9,
        "f1_macro": 0.85,
    }
    for bad in (["accuracy"], ["accuracy=high"], ["=0.9"]):
        with pytest.raises(ImgaiError, match="METRIC=NUMBER"):
            parse_bounds(bad, "--fail-under")


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ImgaiError) as err:
        spec(fail_under={"acuracy": 0.9})
    assert "unknown metric 'acuracy'" in err.value.message and "f1_macro" in err.value.message
    with pytest.raises(ImgaiError) as err:
        spec(fail_under={"loss": 0.5})
    assert "`eval.fail_over` loss" in err.value.message  # the library's words; the CLI says --fail-over
    assert "--fail-over loss" in err.value.worded({"eval.fail_over": "--fail-over"})
    with pytest.raises(ImgaiError, match="eval.fail_under` accuracy"):
        spec(fail_over={"accuracy": 0.5})
    with pytest.raises(ImgaiError, match="between 0 and 1"):
        spec(min_class_recall=1.5)
    with pytest.raises(ImgaiError, match="0 or more"):
        spec(max_drop={"accuracy": -0.1}, baseline="x.json")


def test_checks_pass_and_fail():
    gate = spec(
        fail_under={"accuracy": 0.9, "f1_macro": 0.85, "top2_accuracy": 0.9},
        fail_over={"loss": 0.5},
        min_class_recall=0.7,
    )
    results = run_checks(gate, METRICS)
    outcome = {r.metric: r.passed for r in results}
    assert outcome == {
        "accuracy": True,
        "f1_macro": False,
        "top2_accuracy": True,
        "loss": True,
        "recall[a]": True,
        "recall[b]": False,
    }
    text = format_results(results)
    assert "PASSED  accuracy 0.9000 >= 0.9000" in text  # equal to the bound passes
    assert "FAILED  f1_macro 0.8000 >= 0.8500" in text
    assert "PASSED  loss 0.3000 <= 0.5000" in text
    assert "FAILED  recall[b] 0.6500 >= 0.7000" in text
    assert "FAILED: 4 of 6 check(s) passed" in text


def test_metric_not_computed_is_a_usage_error():
    with pytest.raises(ImgaiError, match="top5_accuracy' was not computed"):
        run_checks(spec(fail_under={"top5_accuracy": 0.9}), METRICS)


def test_baseline_and_max_drop(tmp_path):
    baseline = tmp_path / "metrics.json"
    baseline.write_text(json.dumps({"accuracy": 0.92, "loss": 0.25}))
    gate = spec(baseline=str(baseline), max_drop={"accuracy": 0.01, "loss": 0.1})
    results = {r.metric: r for r in run_checks(gate, METRICS, check_gate(gate))}
    assert not results["accuracy"].passed and results["accuracy"].bound == pytest.approx(0.91)
    assert "baseline 0.9200 minus max drop 0.01" in results["accuracy"].line()
    assert results["loss"].passed and results["loss"].bound == pytest.approx(0.35)  # loss may rise 0.1
    assert run_checks(spec(baseline=str(baseline), max_drop={"accuracy": 0.05}), METRICS)[0].passed

    with pytest.raises(ImgaiError, match="add `eval.baseline`"):
        spec(max_drop={"accuracy": 0.01})
    with pytest.raises(ImgaiError, match="needs `eval.max_drop`"):
        spec(baseline=str(baseline))
    with pytest.raises(ImgaiError, match="not found"):
        spec(baseline=str(tmp_path / "nope.json"), max_drop={"accuracy": 0.01})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ImgaiError, match="not a JSON file"):
        spec(baseline=str(tmp_path / "bad.json"), max_drop={"accuracy": 0.01})
    with pytest.raises(ImgaiError, match="has no 'f1_macro'"):
        spec(baseline=str(baseline), max_drop={"f1_macro": 0.01})
    # A gate built directly (Python API) is checked the same way by check_gate.
    with pytest.raises(ImgaiError, match="add `eval.baseline`"):
        check_gate(EvalConfig(max_drop={"accuracy": 0.01}))


def test_eval_config_section_and_flags_win(tmp_path):
    config = tmp_path / "gate.yaml"
    config.write_text(
        "data:\n  root: somewhere\neval:\n  fail_under: {accuracy: 0.95, f1_macro: 0.5}\n  min_class_recall: 0.6\n"
    )
    assert load_eval_section([config]).fail_under == {"accuracy": 0.95, "f1_macro": 0.5}
    gate = eval_settings(None, [config], fail_under={"accuracy": 0.8}, min_class_recall=None).eval
    assert gate.fail_under == {"accuracy": 0.8, "f1_macro": 0.5} and gate.min_class_recall == 0.6
    assert eval_settings(None).eval.is_empty()
    # a run's saved config.yaml (every section) is read for its eval and infer sections only
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "model: {name: cnn}\neval: {min_class_recall: 0.5}\ninfer: {batch_size: 4}\n"
    )
    settings = eval_settings(run / "best.keras", [config], batch_size=None)
    assert settings.eval.min_class_recall == 0.6 and settings.infer.batch_size == 4
    # the full config validates the section too, with the usual one-line errors
    assert load_config([config]).eval.fail_under == {"accuracy": 0.95, "f1_macro": 0.5}
    with pytest.raises(ImgaiError, match="unknown metric 'acc'"):
        load_config([], ["eval.fail_under.acc=0.9"])
    with pytest.raises(ImgaiError, match="did you mean eval.min_class_recall"):
        load_config([], ["eval.min_class_recal=0.9"])
    with pytest.raises(ImgaiError, match="eval.min_class_recall"):
        load_config([], ["eval.min_class_recall=2"])


# ------------------------------------------------------------------ paired gate against a baseline

CLASSES = ["a", "b"]


def _report(folder, paths, labels, probabilities):
    """An eval report folder as imgai.report writes it: predictions.csv and metrics.json."""
    from imgai.evaluate import compute_metrics
    from imgai.report import predictions_csv

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.csv").write_text(predictions_csv(paths, labels, probabilities, CLASSES))
    (folder / "metrics.json").write_text(json.dumps(compute_metrics(probabilities, labels, CLASSES)))
    return folder


def _answers(correct, labels):
    """Confident probabilities that are right where ``correct`` says so."""
    predicted = np.where(correct, labels, 1 - labels)
    return np.where(predicted[:, None] == np.arange(2), 0.9, 0.1)


def test_baseline_found_from_a_file_report_or_run_folder(tmp_path):
    from imgai.gate import find_baseline
    from imgai.runs import create_eval_dir

    labels = np.array([0, 1, 0, 1])
    paths = [f"img{i}.png" for i in range(4)]
    run = tmp_path / "run"
    val = create_eval_dir(run, "val")
    _report(val, paths, labels, _answers(np.ones(4, bool), labels))
    test = create_eval_dir(run, "test")
    _report(test, paths, labels, _answers(np.ones(4, bool), labels))
    (run / "metrics.json").write_text("{}")  # a report from before eval/ folders: the newer ones win
    assert find_baseline(run).predictions == test / "predictions.csv"  # eval/latest
    assert find_baseline(run, "val").predictions == val / "predictions.csv"  # same split first
    assert find_baseline(val).predictions == val / "predictions.csv"
    assert find_baseline(val / "predictions.csv").metrics == {}
    only_metrics = tmp_path / "m" / "metrics.json"
    only_metrics.parent.mkdir()
    only_metrics.write_text(json.dumps({"accuracy": 0.9}))
    found = find_baseline(only_metrics)
    assert found.predictions is None and found.metrics["accuracy"] == 0.9
    with pytest.raises(ImgaiError, match="holds no eval report"):
        find_baseline(tmp_path / "m" / "..")


def test_baseline_on_other_images_or_classes_is_refused(tmp_path):
    from imgai.gate import find_baseline, read_baseline_predictions

    labels = np.array([0, 1, 0, 1])
    paths = [f"img{i}.png" for i in range(4)]
    base = find_baseline(_report(tmp_path / "r", paths, labels, _answers(np.ones(4, bool), labels)))
    found = read_baseline_predictions(base, paths[::-1], labels[::-1], CLASSES)  # any order
    assert found.argmax(axis=1).tolist() == labels[::-1].tolist()
    with pytest.raises(ImgaiError, match="different images"):
        read_baseline_predictions(base, [*paths[:3], "other.png"], labels, CLASSES)
    with pytest.raises(ImgaiError, match="different images"):
        read_baseline_predictions(base, paths[:3], labels[:3], CLASSES)
    with pytest.raises(ImgaiError, match="has classes"):
        read_baseline_predictions(base, paths, labels, ["a", "c"])
    with pytest.raises(ImgaiError, match="labels some images differently"):
        read_baseline_predictions(base, paths, 1 - labels, CLASSES)


def _gate_on(before_correct, now_correct, drop, tmp_path):
    from imgai.evaluate import compute_metrics
    from imgai.gate import find_baseline, paired_comparison

    n = len(now_correct)
    labels = np.arange(n) % 2
    paths = [f"img{i}.png" for i in range(n)]
    before, now = _answers(before_correct, labels), _answers(now_correct, labels)
    folder = _report(tmp_path / "base", paths, labels, before)
    gate = spec(baseline=str(folder), max_drop={"accuracy": drop})
    paired = paired_comparison(before, now, labels, None, ["accuracy"], 500, 0, 0.95)
    metrics = compute_metrics(now, labels, CLASSES)
    return run_checks(gate, metrics, find_baseline(folder), paired)[0]


def test_gate_verdicts_fail_warn_pass(tmp_path):
    ones = np.ones(200, bool)
    # 20 images lost, none gained: a 10-point drop, McNemar p = 2 / 2**20 -> FAILED
    lost = ones.copy()
    lost[:20] = False
    failed = _gate_on(ones, lost, 0.01, tmp_path)
    assert not failed.passed and failed.verdict == "FAILED"
    assert failed.comparison["p_value"] == pytest.approx(2 / 2**20)
    assert (
        "difference -0.1000" in failed.line() and "exact McNemar: 20 images lost, 0 gained" in failed.line()
    )
    # 3 lost, 1 gained: a 1-point drop beyond a 0.5-point bound, but p = 0.625 -> WARN, passes
    noisy_before, noisy_now = ones.copy(), ones.copy()
    noisy_before[0] = False
    noisy_now[1:4] = False
    warned = _gate_on(noisy_before, noisy_now, 0.005, tmp_path)
    assert warned.passed and warned.warning and warned.verdict == "WARN"
    assert warned.comparison["p_value"] == pytest.approx(0.625) and "within noise" in warned.line()
    assert "interval [" in warned.line()
    assert "1 warning(s)" in format_results([warned]) and "PASSED: 1 of 1" in format_results([warned])
    # within the bound: passes whatever the test says
    passed = _gate_on(noisy_before, noisy_now, 0.02, tmp_path)
    assert passed.passed and not passed.warning


def test_metrics_json_baseline_says_no_paired_test(tmp_path):
    from imgai.gate import find_baseline

    baseline = tmp_path / "metrics.json"
    baseline.write_text(json.dumps({"accuracy": 0.92}))
    gate = spec(baseline=str(baseline), max_drop={"accuracy": 0.01})
    result = run_checks(gate, METRICS, find_baseline(baseline))[0]
    assert not result.passed and "paired test not possible" in result.line()
