#!/usr/bin/env python3
"""Every export format x quantization of one run against its .keras in Keras, side by side.

    python scripts/bench_export.py --run runs/flowers
    python scripts/bench_export.py --run runs/cnn --formats onnx,litert --quantize none,int8

For each format and quantization, ``imgai.export.export_model`` writes the artifact into a
temporary folder and re-scores it with its own runtime on the run's test split (else its
validation split): size, accuracy, top-1 agreement with the .keras, batch-1 latency (p50) and
batch-32 throughput. The .keras is timed in Keras in the same process, on the same images and
CPU, interleaved with the artifacts. Ratios are artifact / Keras (latency: Keras / artifact, so
above 1 is faster). Also times ``imgai predict one.jpg`` end to end (a fresh process, median of 3)
with the .keras and with the ONNX file. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib  # noqa: F401  (puts src/ on the path, quiets the frameworks)
from benchlib import REPO, median


def _predict_wall(model: Path, image: str, repeats: int = 3) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "imgai", "predict", image, "--model", str(model)],
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="a run folder with best.keras and config.yaml")
    parser.add_argument("--formats", default="keras,savedmodel,onnx,litert,openvino")
    parser.add_argument(
        "--quantize", default="none,float16,dynamic,int8,int8-per-tensor", help="LiteRT quantizations"
    )
    parser.add_argument("--data", default=None, help="labelled images (default: the run's test/val split)")
    parser.add_argument("--timing", type=float, default=3.0, help="seconds of timing per artifact")
    args = parser.parse_args()

    import importlib.util

    from imgai.export import Guardrail, export_model

    model_path = Path(args.run) / "best.keras"
    formats = [f for f in args.formats.split(",") if f]
    if "openvino" in formats and importlib.util.find_spec("openvino") is None:
        formats.remove("openvino")
        print("openvino is not installed: skipped")
    rows = []
    keras_rows = []
    with tempfile.TemporaryDirectory(prefix="imgai_bench_export_") as tmp:
        jobs = [(f, "none") for f in formats if f != "litert"]
        if "litert" in formats:
            jobs += [("litert", q) for q in args.quantize.split(",") if q]
        for i, (fmt, quantization) in enumerate(jobs):
            report = export_model(
                model_path,
                [fmt],
                quantization,
                output_dir=Path(tmp) / str(i),
                data_dir=args.data,
                guard=Guardrail(min_agreement=0.0),  # measure everything; the guardrail is not benchmarked
                log=lambda _line: None,
                timing_seconds=args.timing,
            )
            keras_rows.append(report["keras"])
            row = dict(report["artifacts"][0])
            row["keras"] = report["keras"]
            row["num_images"] = report["num_images"]
            rows.append(row)
            print(f"  measured {fmt} {quantization}", flush=True)
        onnx_file = next(
            (Path(tmp) / str(i) / "model.onnx" for i, j in enumerate(jobs) if j[0] == "onnx"), None
        )
        image = None
        wall = {}
        if onnx_file is not None:
            from imgai.evaluate import eval_files_from_run

            classes = json.loads((onnx_file.parent / "imgai.json").read_text())["class_names"]
            image = eval_files_from_run(model_path, classes).paths[0]
            wall = {"keras": _predict_wall(model_path, image), "onnx": _predict_wall(onnx_file, image)}
    keras_size = model_path.stat().st_size
    keras_accuracy = keras_rows[0]["accuracy"]
    keras_p50 = median([k["latency_ms_p50"] for k in keras_rows])
    keras_ips = median([k["throughput_ips"] for k in keras_rows])
    float_litert = next(
        (r["size_bytes"] for r in rows if r["format"] == "litert" and r["quantization"] == "none"), None
    )
    header = (
        f"{'artifact':<28} {'quant':<15} {'size MB':>8} {'x keras':>7} {'accuracy':>8} {'agree':>7} "
        f"{'b1 p50 ms':>9} {'speed-up':>8} {'b32 img/s':>9} {'x keras':>7}"
    )
    print(header)
    print(
        f"{'best.keras (Keras)':<28} {'-':<15} {keras_size / 1e6:>8.2f} {1:>7.2f} {keras_accuracy:>8.2%} {'-':>7} "
        f"{keras_p50:>9.2f} {1:>8.2f} {keras_ips:>9.0f} {1:>7.2f}"
    )
    summary = []
    for r in rows:
        entry = {
            "format": r["format"],
            "quantization": r["quantization"],
            "size_bytes": r["size_bytes"],
            "size_ratio": round(r["size_bytes"] / keras_size, 4),
            "accuracy": round(r["accuracy"], 4),
            "agreement": round(r["agreement"], 4),
            "latency_ms_p50": r["latency_ms_p50"],
            "latency_speedup": round(r["keras"]["latency_ms_p50"] / r["latency_ms_p50"], 2),
            "throughput_ips": r["throughput_ips"],
            "throughput_ratio": round(r["throughput_ips"] / r["keras"]["throughput_ips"], 2),
        }
        if float_litert and r["format"] == "litert":
            entry["litert_float32_over_this"] = round(float_litert / r["size_bytes"], 2)
        summary.append(entry)
        print(
            f"{r['file']:<28} {r['quantization']:<15} {r['size_bytes'] / 1e6:>8.2f} {entry['size_ratio']:>7.2f} "
            f"{r['accuracy']:>8.2%} {r['agreement']:>7.2%} {r['latency_ms_p50']:>9.2f} "
            f"{entry['latency_speedup']:>8.2f} {r['throughput_ips']:>9.0f} {entry['throughput_ratio']:>7.2f}"
        )
    if wall:
        print(
            f"imgai predict one image, fresh process: {wall['keras']:.2f} s with best.keras, "
            f"{wall['onnx']:.2f} s with model.onnx ({wall['keras'] / wall['onnx']:.2f}x faster)"
        )
    benchlib.print_json(
        {
            "run": args.run,
            "images": rows[0]["num_images"],
            "keras": {
                "size_bytes": keras_size,
                "accuracy": keras_accuracy,
                "latency_ms_p50": keras_p50,
                "throughput_ips": keras_ips,
            },
            "artifacts": summary,
            "predict_wall_s": wall,
            "machine": benchlib.machine(),
        }
    )


if __name__ == "__main__":
    main()
