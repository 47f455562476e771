"""Quality gate: checks on evaluation metrics that decide whether a model may ship.

Checks are the ``eval`` section of the config (:class:`imgai.config.EvalConfig`); ``imgai eval``
flags are merged over it by :func:`imgai.evaluate.eval_settings`::

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgai.errors import ImgaiError
from imgai.names import HIGHER_IS_BETTER, LOWER_IS_BETTER, TOP_K_METRIC, check_metric_name

if TYPE_CHECKING:
    from imgai.config import EvalConfig


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
                f"`{option}` '{item}' is not of the form METRIC=NUMBER (for example `{option}` accuracy=0.9)"
            )
        bounds[name] = value
    return bounds


def check_bounds(
    fail_under: dict | None = None,
    fail_over: dict | None = None,
    min_class_recall: float | None = None,
    max_drop: dict | None = None,
) -> None:
    """Check gate values given as parameters (not from a file), in the words of those parameters."""
    for name in fail_under or {}:
        check_metric_name(name, higher_is_better=True)
    for name in fail_over or {}:
        check_metric_name(name, higher_is_better=False)
    for name, drop in (max_drop or {}).items():
        check_metric_name(name)
        if drop < 0:
            raise ImgaiError(
                f"`eval.max_drop` for '{name}' is {drop}: it must be 0 or more (the largest allowed drop)"
            )
    if min_class_recall is not None and not 0.0 <= min_class_recall <= 1.0:
        raise ImgaiError(f"`eval.min_class_recall` {min_class_recall} is not between 0 and 1")


def check_gate(spec: EvalConfig) -> dict | None:
    """The checks that span keys, and the baseline file; returns the baseline's metrics (or None).
    Raises ImgaiError (exit 2) on a mistake, so it can run before any model is loaded."""
    if spec.max_drop and not spec.baseline:
        raise ImgaiError("`eval.max_drop` compares with a baseline: add `eval.baseline` path/to/metrics.json")
    if spec.baseline and not spec.max_drop:
        raise ImgaiError(
            "`eval.baseline` needs `eval.max_drop` METRIC=DELTA to say what may not get worse "
            "(e.g. `eval.max_drop` accuracy=0.01)"
        )
    if not spec.baseline:
        return None
    baseline = load_baseline(spec.baseline)
    for name in spec.max_drop:
        if not isinstance(baseline.get(name), (int, float)):
            raise ImgaiError(f"baseline '{spec.baseline}' has no '{name}': compare a metric it holds")
    return baseline


def load_baseline(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ImgaiError(
            f"baseline '{path}' not found: pass the metrics.json of an earlier 'imgai eval' as `eval.baseline`"
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
        available = [k for k in metrics if k in HIGHER_IS_BETTER + LOWER_IS_BETTER or TOP_K_METRIC.match(k)]
        raise ImgaiError(
            f"metric '{name}' was not computed for this model: gate on one of {', '.join(available)}"
        )
    return float(value)


def run_checks(spec: EvalConfig, metrics: dict, baseline: dict | None = None) -> list[CheckResult]:
    """Evaluate every check of ``spec`` on ``metrics`` (as computed by imgai.evaluate); ``baseline``
    is what :func:`check_gate` returned (read here when not given)."""
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
        baseline = baseline if baseline is not None else check_gate(spec)
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
