"""Quality gate: checks on evaluation metrics that decide whether a model may ship.

Checks come from ``imgai eval`` flags and from the ``eval`` section of a config file (flags win)::

    --fail-under accuracy=0.90      a metric must be at least the bound
    --fail-over loss=0.50           a metric must be at most the bound (for loss)
    --min-class-recall 0.70         every class's recall must be at least the bound
    --baseline old/metrics.json --max-drop accuracy=0.01
                                    a metric may drop at most this much below the baseline's

Each check gives one PASSED / FAILED line with the measured value and the bound. The CLI exits 1
when any check fails; a mistake in the checks themselves (unknown metric, bad number, unreadable
baseline) is an :class:`~imgai.errors.ImgaiError` (exit 2), raised before any model is loaded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from imgai.errors import ImgaiError

HIGHER_IS_BETTER = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)
LOWER_IS_BETTER = ("loss",)
_TOP_K = re.compile(r"^top(\d+)_accuracy$")


def valid_metric_names() -> str:
    return ", ".join([*HIGHER_IS_BETTER, "topK_accuracy (e.g. top3_accuracy)", *LOWER_IS_BETTER])


def check_metric_name(name: str, higher_is_better: bool | None = None) -> str:
    """``name`` if it is a gateable metric (pointing the right way); else an ImgaiError."""
    known_higher = name in HIGHER_IS_BETTER or bool(_TOP_K.match(name))
    known_lower = name in LOWER_IS_BETTER
    if not (known_higher or known_lower):
        raise ImgaiError(f"unknown metric '{name}': use one of {valid_metric_names()}")
    if higher_is_better is True and known_lower:
        raise ImgaiError(
            f"'{name}' is better when lower, so a lower bound makes "
            f"no sense: use --fail-over {name}=VALUE (eval.fail_over)"
        )
    if higher_is_better is False and known_higher:
        raise ImgaiError(
            f"'{name}' is better when higher: use --fail-under {name}=VALUE (eval.fail_under) for it"
        )
    return name


def parse_bounds(items: list[str] | tuple[str, ...], option: str) -> dict[str, float]:
    """``["accuracy=0.9", "f1_macro=0.85"]`` -> ``{"accuracy": 0.9, "f1_macro": 0.85}``."""
    bounds: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not name or math.isnan(value):
            raise ImgaiError(
                f"{option} '{item}' is not of the form METRIC=NUMBER (for example {option} accuracy=0.9)"
            )
        bounds[name] = value
    return bounds


@dataclass
class GateSpec:
    """Every check to run; empty means no gate."""

    fail_under: dict[str, float] = field(default_factory=dict)
    fail_over: dict[str, float] = field(default_factory=dict)
    min_class_recall: float | None = None
    baseline: str | None = None
    max_drop: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict | None = None  # read by validate(), so a bad file fails before evaluation

    def is_empty(self) -> bool:
        return not (self.fail_under or self.fail_over or self.min_class_recall is not None or self.max_drop)

    def validate(self) -> GateSpec:
        """Check names, numbers and the baseline file; raises ImgaiError (exit 2) on a mistake."""
        for name in self.fail_under:
            check_metric_name(name, higher_is_better=True)
        for name in self.fail_over:
            check_metric_name(name, higher_is_better=False)
        for name, drop in self.max_drop.items():
            check_metric_name(name)
            if drop < 0:
                raise ImgaiError(
                    f"max drop for '{name}' is {drop}: it must be 0 or more (the largest allowed drop)"
                )
        if self.min_class_recall is not None and not 0.0 <= self.min_class_recall <= 1.0:
            raise ImgaiError(f"min class recall {self.min_class_recall} is not between 0 and 1")
        if self.max_drop and not self.baseline:
            raise ImgaiError(
                "--max-drop compares with a baseline: add --baseline path/to/metrics.json (eval.baseline)"
            )
        if self.baseline and not self.max_drop:
            raise ImgaiError(
                "--baseline needs --max-drop METRIC=DELTA to say what may not get worse (e.g. --max-drop accuracy=0.01)"
            )
        if self.baseline:
            self.baseline_metrics = load_baseline(self.baseline)
            for name in self.max_drop:
                if not isinstance(self.baseline_metrics.get(name), (int, float)):
                    raise ImgaiError(f"baseline '{self.baseline}' has no '{name}': compare a metric it holds")
        return self


def merge_spec(config_section=None, **flags) -> GateSpec:
    """Checks from the config's ``eval`` section, overridden by command-line flags."""
    spec = GateSpec()
    if config_section is not None:
        spec = GateSpec(
            fail_under=dict(config_section.fail_under),
            fail_over=dict(config_section.fail_over),
            min_class_recall=config_section.min_class_recall,
            baseline=config_section.baseline,
            max_drop=dict(config_section.max_drop),
        )
    spec.fail_under.update(flags.get("fail_under") or {})
    spec.fail_over.update(flags.get("fail_over") or {})
    spec.max_drop.update(flags.get("max_drop") or {})
    if flags.get("min_class_recall") is not None:
        spec.min_class_recall = flags["min_class_recall"]
    if flags.get("baseline"):
        spec.baseline = flags["baseline"]
    return spec


def load_baseline(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ImgaiError(
            f"baseline '{path}' not found: pass the metrics.json of an earlier 'imgai eval' to --baseline"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ImgaiError(
            f"baseline '{path}' is not a JSON file: pass a metrics.json written by 'imgai eval'"
        ) from None
    if not isinstance(data, dict):
        raise ImgaiError(
            f"baseline '{path}' does not hold metrics: pass a metrics.json written by 'imgai eval'"
        )
    return data


@dataclass
class CheckResult:
    check: str  # fail_under, fail_over, min_class_recall, max_drop
    metric: str
    measured: float
    bound: float
    passed: bool
    detail: str = ""
    op: str = ">="

    def line(self) -> str:
        op = self.op
        detail = f" ({self.detail})" if self.detail else ""
        verdict = "PASSED" if self.passed else "FAILED"
        return f"{verdict}  {self.metric} {self.measured:.4f} {op} {self.bound:.4f}{detail}"

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "metric": self.metric,
            "measured": self.measured,
            "bound": self.bound,
            "op": self.op,
            "passed": self.passed,
            "detail": self.detail,
        }


def _measured(metrics: dict, name: str) -> float:
    value = metrics.get(name)
    if not isinstance(value, (int, float)):
        available = [k for k in metrics if k in HIGHER_IS_BETTER + LOWER_IS_BETTER or _TOP_K.match(k)]
        raise ImgaiError(
            f"metric '{name}' was not computed for this model: gate on one of {', '.join(available)}"
        )
    return float(value)


def run_checks(spec: GateSpec, metrics: dict) -> list[CheckResult]:
    """Evaluate every check of ``spec`` on ``metrics`` (as computed by imgai.evaluate)."""
    results: list[CheckResult] = []
    for name, bound in spec.fail_under.items():
        value = _measured(metrics, name)
        results.append(CheckResult("fail_under", name, value, bound, value >= bound, "fail-under"))
    for name, bound in spec.fail_over.items():
        value = _measured(metrics, name)
        results.append(CheckResult("fail_over", name, value, bound, value <= bound, "fail-over", "<="))
    if spec.min_class_recall is not None:
        for cls, row in metrics["per_class"].items():
            if not row.get("support"):
                continue  # no images of this class: nothing to measure
            recall = float(row["recall"] if row.get("recall") is not None else row["accuracy"])
            bound = spec.min_class_recall
            results.append(
                CheckResult(
                    "min_class_recall", f"recall[{cls}]", recall, bound, recall >= bound, "min-class-recall"
                )
            )
    if spec.max_drop:
        baseline = (
            spec.baseline_metrics if spec.baseline_metrics is not None else load_baseline(spec.baseline)
        )
        for name, drop in spec.max_drop.items():
            value, before = _measured(metrics, name), float(baseline[name])
            if name in LOWER_IS_BETTER:
                bound = before + drop
                results.append(
                    CheckResult(
                        "max_drop",
                        name,
                        value,
                        bound,
                        value <= bound,
                        f"baseline {before:.4f} plus max rise {drop:g}",
                        "<=",
                    )
                )
            else:
                bound = before - drop
                results.append(
                    CheckResult(
                        "max_drop",
                        name,
                        value,
                        bound,
                        value >= bound,
                        f"baseline {before:.4f} minus max drop {drop:g}",
                    )
                )
    return results


def format_results(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    lines = ["Quality gate:"] + [f"  {r.line()}" for r in results]
    lines.append(
        f"  {'FAILED' if failed else 'PASSED'}: {len(results) - failed} of {len(results)} check(s) passed"
    )
    return "\n".join(lines)
