#!/usr/bin/env python3
"""Peak memory and time of streamed prediction vs decoding every image first, side by side.

    python scripts/bench_predict_memory.py --model runs/flowers/best.keras --data ../shared/datasets/flower_photos

Each way runs in its own Python process, on the same files, after one warm-up prediction; the
peak resident memory (Linux VmHWM, reset after the warm-up) is compared with the memory before
the run. The script also checks that both ways give the same probabilities. "streamed" is what ``imgai predict`` and
``imgai eval`` do (imgai.predict.iter_predictions: a few batches decoded at a time); "all at once"
decodes every image into one array first, then predicts.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = r"""
import json, sys, time
sys.path.insert(0, {src!r})
from imgai.quiet import silence_frameworks, import_keras
silence_frameworks(); import_keras()
import numpy as np
from imgai.modelfile import load_model
from imgai.predict import collect_paths, iter_predictions, run_inference
from imgai.data import load_images
model, info = load_model({model!r})
spec = info.decode_spec
files, _ = collect_paths([{data!r}])
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MB
# Warm the model up on one image, then reset the peak (VmHWM) so only the run itself counts.
run_inference(model, load_images(files[:1], spec, progress=False), 32)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
base = status("VmRSS")
start = time.perf_counter()
if {mode!r} == "streamed":
    probs = np.concatenate([p for _, p in iter_predictions(model, info, files, 32, progress=False)])
else:
    decoded = load_images(files, spec, progress=False)
    probs = run_inference(model, decoded, 32)
seconds = time.perf_counter() - start
peak = status("VmHWM")
np.save({out!r}, probs)
print(json.dumps({{"images": len(files), "seconds": seconds, "peak_mb": peak, "base_mb": base}}))
"""


def run(mode: str, model: str, data: str, out: str) -> dict:
    code = CHILD.format(src=str(SRC), model=model, data=data, mode=mode, out=out)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="folder of images (searched recursively)")
    parser.add_argument(
        "--tmp", default="/tmp", help="where the two probability arrays are saved for the comparison"
    )
    args = parser.parse_args()

    import numpy as np

    results = {}
    for mode in ("streamed", "all at once"):
        out = str(Path(args.tmp) / f"bench_predict_{mode.replace(' ', '_')}.npy")
        results[mode] = run(mode, args.model, args.data, out)
        results[mode]["probs"] = np.load(out)
    s, a = results["streamed"], results["all at once"]
    print(f"{s['images']} images from {args.data}, model {args.model}")
    print(f"{'':12} {'peak RSS MB':>12} {'above start MB':>15} {'seconds':>8}")
    for mode, r in results.items():
        print(f"{mode:12} {r['peak_mb']:12.0f} {r['peak_mb'] - r['base_mb']:15.0f} {r['seconds']:8.1f}")
    growth_s, growth_a = s["peak_mb"] - s["base_mb"], a["peak_mb"] - a["base_mb"]
    print(
        f"memory growth ratio (all at once / streamed): {growth_a / max(growth_s, 1):.1f}x; "
        f"time ratio (streamed / all at once): {s['seconds'] / a['seconds']:.2f}"
    )
    print(f"largest probability difference: {np.abs(s['probs'] - a['probs']).max():.2e}")


if __name__ == "__main__":
    main()
