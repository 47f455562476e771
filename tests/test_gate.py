"""Quality gate: parsing checks, running them, and the eval section of the config."""

import json

import pytest

from imgai.config import load_config, load_eval_section
from imgai.errors import ImgaiError
from imgai.gate import GateSpec, format_results, merge_spec, parse_bounds, run_checks

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
        GateSpec(fail_under={"acuracy": 0.9}).validate()
    assert "unknown metric 'acuracy'" in err.value.message and "f1_macro" in err.value.message
    with pytest.raises(ImgaiError, match="--fail-over loss"):
        GateSpec(fail_under={"loss": 0.5}).validate()
    with pytest.raises(ImgaiError, match="--fail-under accuracy"):
        GateSpec(fail_over={"accuracy": 0.5}).validate()
    with pytest.raises(ImgaiError, match="between 0 and 1"):
        GateSpec(min_class_recall=1.5).validate()


def test_checks_pass_and_fail():
    spec = GateSpec(
        fail_under={"accuracy": 0.9, "f1_macro": 0.85, "top2_accuracy": 0.9},
        fail_over={"loss": 0.5},
        min_class_recall=0.7,
    )
    results = run_checks(spec.validate(), METRICS)
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
        run_checks(GateSpec(fail_under={"top5_accuracy": 0.9}).validate(), METRICS)


def test_baseline_and_max_drop(tmp_path):
    baseline = tmp_path / "metrics.json"
    baseline.write_text(json.dumps({"accuracy": 0.92, "loss": 0.25}))
    spec = GateSpec(baseline=str(baseline), max_drop={"accuracy": 0.01, "loss": 0.1}).validate()
    results = {r.metric: r for r in run_checks(spec, METRICS)}
    assert not results["accuracy"].passed and results["accuracy"].bound == pytest.approx(0.91)
    assert "baseline 0.9200 minus max drop 0.01" in results["accuracy"].line()
    assert results["loss"].passed and results["loss"].bound == pytest.approx(0.35)  # loss may rise 0.1
    assert run_checks(GateSpec(baseline=str(baseline), max_drop={"accuracy": 0.05}).validate(), METRICS)[
        0
    ].passed

    with pytest.raises(ImgaiError, match="add --baseline"):
        GateSpec(max_drop={"accuracy": 0.01}).validate()
    with pytest.raises(ImgaiError, match="needs --max-drop"):
        GateSpec(baseline=str(baseline)).validate()
    with pytest.raises(ImgaiError, match="not found"):
        GateSpec(baseline=str(tmp_path / "nope.json"), max_drop={"accuracy": 0.01}).validate()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ImgaiError, match="not a JSON file"):
        GateSpec(baseline=str(tmp_path / "bad.json"), max_drop={"accuracy": 0.01}).validate()
    with pytest.raises(ImgaiError, match="has no 'f1_macro'"):
        GateSpec(baseline=str(baseline), max_drop={"f1_macro": 0.01}).validate()


def test_eval_config_section_and_flags_win(tmp_path):
    config = tmp_path / "gate.yaml"
    config.write_text(
        "data:\n  root: somewhere\neval:\n  fail_under: {accuracy: 0.95, f1_macro: 0.5}\n  min_class_recall: 0.6\n"
    )
    section = load_eval_section([config])
    spec = merge_spec(section, fail_under={"accuracy": 0.8}, min_class_recall=None)
    assert spec.fail_under == {"accuracy": 0.8, "f1_macro": 0.5} and spec.min_class_recall == 0.6
    assert merge_spec(None).is_empty()
    # the full config validates the section too, with the usual one-line errors
    assert load_config([config]).eval.fail_under == {"accuracy": 0.95, "f1_macro": 0.5}
    with pytest.raises(ImgaiError, match="unknown metric 'acc'"):
        load_config([], ["eval.fail_under.acc=0.9"])
    with pytest.raises(ImgaiError, match="did you mean eval.min_class_recall"):
        load_config([], ["eval.min_class_recal=0.9"])
    with pytest.raises(ImgaiError, match="eval.min_class_recall"):
        load_config([], ["eval.min_class_recall=2"])
