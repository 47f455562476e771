#!/usr/bin/env python3
"""Command-line latency: ``imgai --help``, and ``imgai predict one.jpg`` against bare Keras
loading the same model and predicting the same file, side by side, each a fresh process.

    python scripts/bench_cli.py                       # default model: classic CNN at 224 px
    python scripts/bench_cli.py --image ../shared/datasets/flower_photos/roses/<file>.jpg
    KERAS_BACKEND=jax python scripts/bench_cli.py

The model is built and saved with imgai's own code (untrained weights load and predict exactly
as trained ones do). Runs are interleaved, ``--repeats`` each; figures are medians of wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import REPO, median

BARE_KERAS = """
import sys
import keras
import numpy as np
from PIL import Image

model = keras.saving.load_model(sys.argv[1])
x = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype="float32")[None]
print(model.predict(x, verbose=0)[0].argmax())
"""


def _timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", help="a JPEG to predict (default: a generated 400x300 photo)")
    parser.add_argument("--image-size", type=int, default=224, help="the model's input side")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = Path(tempfile.mkdtemp(prefix="imgai-bench-cli-"))
    image = args.image or str(next(benchlib.make_jpegs(work / "photos", 5).glob("*/*.jpg")))
    model_path = work / "model.keras"
    setup = (
        "from imgai.config import defaults; from imgai.models import create_model; "
        "from imgai.modelfile import save_model; from imgai.train import model_metadata; "
        f"c = defaults().model_copy(); size = ({args.image_size}, {args.image_size}); "
        "c.data.image_size = size; "
        "m = create_model(c.model, size, 3, 5); "
        f"save_model(m, {str(model_path)!r}, model_metadata(c, ['a', 'b', 'c', 'd', 'e']))"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, check=True, capture_output=True)

    commands = {
        "python_startup": [sys.executable, "-c", "pass"],
        "imgai_help": [sys.executable, "-m", "imgai", "--help"],
        "imgai_predict": [sys.executable, "-m", "imgai", "predict", image, "--model", str(model_path)],
        "bare_keras_predict": [sys.executable, "-c", BARE_KERAS, str(model_path), image],
    }
    info = benchlib.machine()
    times: dict[str, list[float]] = {name: [] for name in commands}
    try:
        for cmd in commands.values():  # warm the file cache and compiled bytecode
            _timed(cmd, env)
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                times[name].append(_timed(cmd, env))
        size_mb = model_path.stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: median(v) for name, v in times.items()}
    ratio = best["imgai_predict"] / best["bare_keras_predict"]
    print(
        f"Wall time of a fresh process, median of {args.repeats} (model "
        f"{size_mb:.0f} MB, classic CNN at {args.image_size} px, "
        f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}):"
    )
    print(f"  python -c pass                    {best['python_startup']:6.3f} s")
    print(f"  imgai --help                      {best['imgai_help']:6.3f} s   (target <= 0.3 s)")
    print(f"  imgai predict one.jpg             {best['imgai_predict']:6.3f} s")
    print(f"  bare keras load + predict         {best['bare_keras_predict']:6.3f} s")
    print(f"  imgai predict / bare keras        {ratio:6.2f}x  (target <= 1.2x)")
    benchlib.print_json(
        {
            "benchmark": "cli",
            "repeats": args.repeats,
            "image": image,
            "model_mb": round(size_mb, 1),
            "seconds": {k: round(v, 3) for k, v in best.items()},
            "all_runs": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "predict_ratio_to_bare_keras": round(ratio, 3),
            "machine": info,
        }
    )


if __name__ == "__main__":
    main()
