"""Quality gate: parsing checks, running them, and the eval section of the config."""

import json

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
