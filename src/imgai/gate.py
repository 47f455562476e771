"""Quality gate: checks on evaluation metrics that decide whether a model may ship.

Checks are the ``eval`` section of the config (:class:`imgai.config.EvalConfig`); ``imgai eval``
flags are merged over it by :func:`imgai.evaluate.eval_settings`::

    --fail-under accuracy=0.90      a metric must be at least the bound
    --fail-over loss=0.50           a metric must be at most the bound (for loss)
    --min-class-recall 0.70         every class's recall must be at least the bound
    --baseline runs/prod --max-drop accuracy=0.01
                                    a metric may drop at most this much below the baseline's

Each check gives one PASSED / FAILED line with the measured value and the bound. The CLI exits 1
when any check fails; a mistake in the checks themselves (unknown metric, bad number, unreadable
baseline) is an :class:`~imgai.errors.ImgaiError` (exit 2), raised before any model is loaded.

A baseline is a report of an earlier ``imgai eval``: its ``predictions.csv``, its report folder,
its ``metrics.json``, or the run folder (its newest report of the same split). With per-image
predictions on the same images, a drop beyond ``max_drop`` FAILS only when it is also significant
at ``eval.significance`` (exact McNemar test for accuracy, paired bootstrap for the other metrics);
a drop beyond the bound that is within noise is a WARN (exit 0). With only a metrics.json the
bound alone decides, and the line says the paired test was not possible.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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


def check_open_unit(value: float | None, key: str) -> None:
    """A threshold, accuracy or significance level must lie strictly between 0 and 1."""
    if value is not None and not 0.0 < value < 1.0:
        raise ImgaiError(
            f"`{key}` {value:g} is not between 0 and 1: give a value such as 0.8 (0 and 1 excluded)"
        )


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


PREDICTIONS_FILE = "predictions.csv"  # the name imgai.report writes


@dataclass
class Baseline:
    """An earlier eval report: its metrics, and its per-image predictions file when it has one."""

    source: Path
    metrics: dict
    predictions: Path | None = None


def find_baseline(path: str | Path, label: str | None = None) -> Baseline:
    """The report ``path`` names: a predictions.csv, a metrics.json, a report folder, or a run
    folder (its newest report of split ``label``, else its latest report)."""
    from imgai.runs import METRICS_FILE, latest_eval_dir

    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        report = latest_eval_dir(path, label)  # a run folder: its reports (before any older top-level one)
        if report is not None:
            path = report
        elif not ((path / PREDICTIONS_FILE).is_file() or (path / METRICS_FILE).is_file()):
            raise ImgaiError(
                f"baseline folder '{path}' holds no eval report (no {PREDICTIONS_FILE}, "
                f"{METRICS_FILE} or eval/ folder): run 'imgai eval' on it first, or pass the "
                "report's folder as `eval.baseline`"
            )
        folder = path
    elif path.is_file():
        folder = path.parent
    else:
        raise ImgaiError(
            f"baseline '{path}' not found: pass the predictions.csv, metrics.json, report folder "
            "or run folder of an earlier 'imgai eval' as `eval.baseline`"
        )
    if path.is_file() and path.suffix.lower() == ".csv":
        return Baseline(path, {}, path)
    metrics_path = path if path.is_file() else folder / METRICS_FILE
    predictions = folder / PREDICTIONS_FILE
    metrics = load_baseline(metrics_path) if metrics_path.is_file() else {}
    return Baseline(metrics_path, metrics, predictions if predictions.is_file() else None)


def read_baseline_predictions(
    baseline: Baseline, paths: list[str], labels: np.ndarray, class_names: list[str]
):
    """The baseline's probabilities in the order of ``paths`` (this eval's images), after checking
    that both scored the same images with the same classes and labels."""
    source = baseline.predictions
    try:
        with open(source, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error) as exc:
        raise ImgaiError(
            f"baseline '{source}' cannot be read ({exc}): pass a predictions.csv written by 'imgai eval'"
        ) from None
    columns = [c[2:] for c in header[4:] if c.startswith("p_")]
    if (
        header[:4] != ["path", "true_class", "predicted_class", "confidence"]
        or len(columns) != len(header) - 4
    ):
        raise ImgaiError(
            f"baseline '{source}' is not a predictions.csv written by 'imgai eval' (its header differs)"
        )
    if sorted(columns) != sorted(class_names):
        raise ImgaiError(
            f"baseline '{source}' has classes {columns}, this model {list(class_names)}: "
            "compare models of the same classes"
        )
    by_path = {row[0]: row for row in rows if len(row) == len(header)}
    if not set(paths) <= set(by_path):  # reports made from another folder: compare full paths
        by_path = {os.path.abspath(key): row for key, row in by_path.items()}
        paths = [os.path.abspath(p) for p in paths]
    missing = [p for p in paths if p not in by_path]
    if missing or len(by_path) != len(paths):
        raise ImgaiError(
            f"baseline '{source}' was scored on different images ({len(by_path)} there, {len(paths)} here, "
            f"{len(missing)} of these not there, e.g. '{(missing or ['-'])[0]}'): compare reports of "
            "the same images (the same split or --data)"
        )
    order = [columns.index(c) for c in class_names]
    try:
        probabilities = np.asarray([[float(v) for v in by_path[p][4:]] for p in paths], dtype=np.float64)[
            :, order
        ]
    except ValueError:
        raise ImgaiError(f"baseline '{source}' holds a probability that is not a number") from None
    true = [by_path[p][1] for p in paths]
    if any(t != class_names[int(label)] for t, label in zip(true, labels)):
        raise ImgaiError(
            f"baseline '{source}' labels some images differently: compare reports of the same labelled images"
        )
    return probabilities


def check_gate(spec: EvalConfig) -> Baseline | None:
    """The checks that span keys, and the baseline report; returns it (or None).
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
    baseline = find_baseline(spec.baseline)
    if baseline.predictions is None:  # with per-image predictions every metric can be recomputed
        for name in spec.max_drop:
            if not isinstance(baseline.metrics.get(name), (int, float)):
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
    warning: bool = False  # beyond the bound, but within noise: passes with a WARN line
    comparison: dict = field(default_factory=dict)  # paired test against the baseline, if any

    @property
    def verdict(self) -> str:
        return "FAILED" if not self.passed else "WARN" if self.warning else "PASSED"

    def line(self) -> str:
        op = self.op
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.verdict:<6}  {self.metric} {self.measured:.4f} {op} {self.bound:.4f}{detail}"

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "metric": self.metric,
            "measured": self.measured,
            "bound": self.bound,
            "op": self.op,
            "passed": self.passed,
            "verdict": self.verdict,
            "detail": self.detail,
            **({"comparison": self.comparison} if self.comparison else {}),
        }


def paired_comparison(
    baseline_probabilities: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    top_k: int | None,
    metric_names: list[str],
    resamples: int,
    seed: int,
    level: float,
) -> dict[str, dict]:
    """Per metric: the difference (this model minus the baseline, on the same images), its paired
    bootstrap interval, and a p-value for "no difference" (exact McNemar for accuracy, paired
    bootstrap for the others)."""
    from imgai.stats import (
        ScoredImages,
        bootstrap_p_value,
        mcnemar_exact,
        paired_bootstrap,
        percentile_interval,
    )

    before = ScoredImages(baseline_probabilities, labels, top_k)
    now = ScoredImages(probabilities, labels, top_k)
    everything = np.arange(len(labels))[None, :]
    exact_before, exact_now = before.metrics(everything), now.metrics(everything)
    draws = paired_bootstrap(before, now, resamples, seed) if resamples else {}
    out: dict[str, dict] = {}
    for name in metric_names:
        if name not in exact_now:
            continue
        result = {
            "baseline": float(exact_before[name][0]),
            "difference": float(exact_now[name][0] - exact_before[name][0]),
            "interval": percentile_interval(draws[name], level) if name in draws else None,
            "level": level,
            "resamples": resamples,
            "seed": seed,
        }
        if name == "accuracy":
            test = mcnemar_exact(before.correct, now.correct)
            result.update(
                test="exact McNemar", p_value=test["p_value"], lost=test["lost"], gained=test["gained"]
            )
        elif name in draws:
            result.update(test="paired bootstrap", p_value=bootstrap_p_value(draws[name]))
        else:
            result.update(test=None, p_value=None)
        out[name] = result
    return out


def _describe(comparison: dict) -> str:
    interval = comparison.get("interval")
    text = f"difference {comparison['difference']:+.4f}"
    if interval is not None:
        text += f", {comparison['level']:.0%} interval [{interval[0]:+.4f}, {interval[1]:+.4f}]"
    if comparison.get("p_value") is not None:
        p_value, floor = comparison["p_value"], 1.0 / max(comparison.get("resamples") or 1, 1)
        bootstrapped = comparison["test"] == "paired bootstrap"
        shown = f"p<={floor:.2g}" if bootstrapped and p_value <= floor else f"p={p_value:.3g}"
        text += f", {shown} ({comparison['test']}"
        if "lost" in comparison:
            text += f": {comparison['lost']} images lost, {comparison['gained']} gained"
        text += ")"
    return text


def _measured(metrics: dict, name: str) -> float:
    value = metrics.get(name)
    if not isinstance(value, (int, float)):
        available = [k for k in metrics if k in HIGHER_IS_BETTER + LOWER_IS_BETTER or TOP_K_METRIC.match(k)]
        raise ImgaiError(
            f"metric '{name}' was not computed for this model: gate on one of {', '.join(available)}"
        )
    return float(value)


def run_checks(
    spec: EvalConfig, metrics: dict, baseline: dict | Baseline | None = None, paired: dict | None = None
) -> list[CheckResult]:
    """Evaluate every check of ``spec`` on ``metrics`` (as computed by imgai.evaluate); ``baseline``
    is the baseline's metrics or what :func:`check_gate` returned (read here when not given).
    ``paired`` (from :func:`paired_comparison`, on the same images) turns a max_drop failure that
    is not significant at ``spec.significance`` into a warning."""
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
        before_metrics = baseline.metrics if isinstance(baseline, Baseline) else baseline
        for name, drop in spec.max_drop.items():
            value = _measured(metrics, name)
            comparison = (paired or {}).get(name)
            before = comparison["baseline"] if comparison else float(before_metrics[name])
            lower = name in LOWER_IS_BETTER
            bound = before + drop if lower else before - drop
            within = value <= bound if lower else value >= bound
            detail = f"baseline {before:.4f} {'plus max rise' if lower else 'minus max drop'} {drop:g}"
            warning = False
            if comparison:
                detail += "; " + _describe(comparison)
                p_value = comparison.get("p_value")
                if not within and p_value is not None and p_value >= spec.significance:
                    within, warning = True, True  # beyond the bound, but noise could explain it
                    detail += f"; within noise at significance {spec.significance:g}"
            elif isinstance(baseline, Baseline) and baseline.predictions is None:
                detail += "; paired test not possible: the baseline has no predictions.csv"
            results.append(
                CheckResult(
                    "max_drop",
                    name,
                    value,
                    bound,
                    within,
                    detail,
                    "<=" if lower else ">=",
                    warning,
                    comparison or {},
                )
            )
    return results


def format_results(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    warned = sum(r.warning for r in results)
    lines = ["Quality gate:"] + [f"  {r.line()}" for r in results]
    lines.append(
        f"  {'FAILED' if failed else 'PASSED'}: {len(results) - failed} of {len(results)} check(s) passed"
        + (f" ({warned} warning(s): beyond the bound but within noise)" if warned else "")
    )
    return "\n".join(lines)
