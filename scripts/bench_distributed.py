#!/usr/bin/env python3
"""Images/s of data-parallel training on 1 vs N devices, and what the distributed path costs.

Trains imgai's model on synthetic uint8 batches through imgai's own batches (``ImageBatches``),
side by side in one process on the JAX backend:

* ``plain``: no distribution (one device, as ``train.distribution: none``);
* ``dp1``: ``keras.distribution.DataParallel`` on one device: the overhead of the distributed path;
* ``dpN``: ``DataParallel`` on N devices, the same global batch split over them.

Each is timed over ``--steps`` steps after two warm-up epochs (compilation; DataParallel compiles
again on its second fit), best of ``--repeats``, alternating. Without several accelerators the N
devices are simulated on the CPU with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
(they share the same cores, so the scaling figure then measures the overhead of splitting, not a
speed-up).

    python scripts/bench_distributed.py                       # 2 simulated CPU devices
    python scripts/bench_distributed.py --devices 4 --image-size 96 --batch-size 64

Simulated devices meet in XLA's in-process collectives, which end the process when one device
waits too long for the others; on a heavily loaded machine ``--collective-timeout 600`` raises
those limits (XLA_FLAGS ``--xla_cpu_collective_timeout_seconds`` and
``--xla_cpu_collective_call_terminate_timeout_seconds``, known to jaxlib 0.10).

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _measure(args) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from imgai.quiet import import_keras, silence_frameworks

    silence_frameworks()
    keras = import_keras()
    import jax
    import numpy as np

    from imgai.batches import ImageBatches
    from imgai.config import ModelConfig
    from imgai.data import DecodedImages
    from imgai.models import create_model

    devices = jax.devices()
    if len(devices) < args.devices:
        raise SystemExit(f"only {len(devices)} device(s) visible, {args.devices} asked")
    size = (args.image_size, args.image_size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.batch_size * args.steps, *size, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, size=len(images))
    names = [f"{d.platform}:{d.id}" for d in devices]
    store = DecodedImages(images=images, labels=labels, paths=[""] * len(labels))

    def run(mode: str) -> float:
        distribution = None
        if mode != "plain":
            count = 1 if mode == "dp1" else args.devices
            distribution = keras.distribution.DataParallel(devices=names[:count], auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
        try:
            keras.utils.set_random_seed(0)
            model = create_model(
                ModelConfig(name="cnn", filters=[16, 32], dense_units=64), size, 3, 5, "bilinear"
            )
            model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
            multiple = 1 if mode == "plain" else (1 if mode == "dp1" else args.devices)
            batches = ImageBatches(store, 5, args.batch_size, shuffle=True, multiple=multiple)
            # Two warm-up epochs: with DataParallel the second fit compiles again (the variables'
            # layout after the first differs from the initial one), 8 s against 2.5 s per timed
            # epoch on one simulated device, which a single warm-up counted as overhead.
            for _ in range(2):
                model.fit(batches, epochs=1, verbose=0)
            start = time.perf_counter()
            model.fit(batches, epochs=1, verbose=0)
            return len(images) / (time.perf_counter() - start)
        finally:
            keras.distribution.set_distribution(None)

    modes = ["plain", "dp1", f"dp{args.devices}"]
    best = {m: 0.0 for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            best[mode] = max(best[mode], run(mode))
    many = best[f"dp{args.devices}"]
    return {
        "backend": "jax",
        "platform": devices[0].platform,
        "simulated": devices[0].platform == "cpu",
        "devices": args.devices,
        "image_size": args.image_size,
        "global_batch": args.batch_size,
        "images_per_s_plain": round(best["plain"], 1),
        "images_per_s_dp1": round(best["dp1"], 1),
        f"images_per_s_dp{args.devices}": round(many, 1),
        "speedup": round(many / best["dp1"], 3),
        "scaling_efficiency": round(many / best["dp1"] / args.devices, 3),
        "overhead_dp1_vs_plain_ms_per_step": round(
            (args.batch_size / best["dp1"] - args.batch_size / best["plain"]) * 1000, 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--collective-timeout",
        type=int,
        default=0,
        help="seconds simulated devices may wait for each other in a collective (0: XLA's default)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size % args.devices:
        raise SystemExit(f"--batch-size {args.batch_size} must divide by --devices {args.devices}")
    if args.child:
        print(json.dumps(_measure(args)))
        return
    # The device count is fixed when JAX starts: measure in a fresh process.
    env = dict(os.environ, KERAS_BACKEND="jax")
    flag = f"--xla_force_host_platform_device_count={args.devices}"
    if args.collective_timeout:
        flag += "".join(
            f" --xla_cpu_collective_{name}={args.collective_timeout}"
            for name in ("timeout_seconds", "call_terminate_timeout_seconds")
        )
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), flag]))
    child = subprocess.run(
        [sys.executable, __file__, "--child", *sys.argv[1:]], env=env, capture_output=True, text=True
    )
    if child.returncode:
        sys.stderr.write(child.stderr[-3000:])
        raise SystemExit(child.returncode)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    many = f"images_per_s_dp{args.devices}"
    where = "simulated CPU devices" if result["simulated"] else f"{result['platform']} devices"
    print(f"JAX, {args.devices} {where}, {args.image_size} px, global batch {args.batch_size}:")
    print(f"  one device, no distribution : {result['images_per_s_plain']:>9.1f} images/s")
    print(f"  DataParallel on 1 device    : {result['images_per_s_dp1']:>9.1f} images/s")
    print(f"  DataParallel on {args.devices} devices   : {result[many]:>9.1f} images/s")
    print(
        f"  speed-up {result['speedup']:.2f}x, scaling efficiency {result['scaling_efficiency']:.0%}; "
        f"distributed path on one device: {result['overhead_dp1_vs_plain_ms_per_step']:+.2f} ms per step"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
