"""What the statistics of ``imgai eval`` add to its time: bootstrap intervals, calibration, risk-coverage.

Measured side by side in one run, on synthetic probabilities of a realistic size (default 734
images, 5 classes: the flowers validation split):

1. the metrics eval computed before (``compute_metrics``);
2. the same plus calibration (ECE, Brier, NLL), the selective-prediction figures and the 95 %
   bootstrap intervals (``eval.bootstrap_resamples``, default 1000), as ``imgai eval`` now does;
3. optionally, ``--report runs/NAME/eval/SPLIT/metrics.json`` of a real eval of the same size: its
   ``seconds`` (decode + inference) is the eval time the statistics are added to, and the ratio
   (eval + statistics) / eval is printed.

    PYTHONPATH=src python3 scripts/bench_eval_stats.py [--images 734] [--classes 5] [--resamples 1000]
        [--report PATH/metrics.json]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imgai.config import InferConfig  # noqa: E402
from imgai.evaluate import compute_metrics, selective_figures  # noqa: E402
from imgai.modelfile import ModelInfo  # noqa: E402
from imgai.stats import bootstrap_intervals, calibration_metrics  # noqa: E402


def synthetic(images: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a model about 85 % right, over-confident like a real network."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, images)
    logits = rng.normal(size=(images, classes)) * 2.0
    logits[np.arange(images), labels] += 3.5
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32), labels


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=734)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--report", default=None, help="metrics.json of a real eval: its seconds")
    args = parser.parse_args()

    probabilities, labels = synthetic(args.images, args.classes)
    names = [f"class{i}" for i in range(args.classes)]
    info = ModelInfo(tuple(names), (224, 224))

    def before():
        compute_metrics(probabilities, labels, names, 2)

    def after():
        compute_metrics(probabilities, labels, names, 2)
        calibration_metrics(probabilities, labels)
        selective_figures(probabilities, labels, InferConfig(), info)
        bootstrap_intervals(probabilities, labels, names, 2, args.resamples, 0)

    def new_plots():  # the two PNGs the report gained (reliability, risk-coverage)
        from imgai import plots

        with tempfile.TemporaryDirectory() as tmp:
            plots.plot_reliability(calibration_metrics(probabilities, labels), Path(tmp) / "r.png")
            confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
            plots.plot_risk_coverage(confidence, correct, Path(tmp) / "c.png")

    before_s, after_s = best_of(before, args.repeats), best_of(after, args.repeats)
    new_plots()  # matplotlib's first import is not part of any eval after the first plot
    plots_s = best_of(new_plots, 3)
    added = after_s - before_s
    figures = {
        "images": args.images,
        "classes": args.classes,
        "resamples": args.resamples,
        "metrics_before_s": round(before_s, 4),
        "metrics_now_s": round(after_s, 4),
        "added_s": round(added, 4),
        "new_plots_s": round(plots_s, 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "numpy": np.__version__,
    }
    print(
        f"metrics as before:            {before_s * 1000:8.1f} ms ({args.images} images, {args.classes} classes)"
    )
    print(f"with calibration + bootstrap: {after_s * 1000:8.1f} ms ({args.resamples} resamples)")
    print(f"the two new plots:            {plots_s * 1000:8.1f} ms")
    if args.report:
        report = json.loads(Path(args.report).read_text())
        if report.get("num_images") != args.images:
            print(f"note: the report scored {report.get('num_images')} images, not {args.images}")
        eval_s = float(report["seconds"])
        figures.update(
            report=args.report,
            eval_s=eval_s,
            ratio=round((eval_s + added) / eval_s, 4),
            ratio_with_plots=round((eval_s + added + plots_s) / eval_s, 4),
        )
        print(f"eval of the report (decode + inference): {eval_s:.2f} s")
        print(f"eval time ratio, statistics (with / without): {figures['ratio']:.3f}")
        print(f"eval time ratio, statistics and new plots:    {figures['ratio_with_plots']:.3f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
