"""Augmentation throughput: imgai's compiled augmentation step vs the same Keras layers called
eagerly, side by side in one run (images per second; ratio = compiled / eager).

    PYTHONPATH=src python scripts/bench_augment.py [--size 128] [--batch 32] [--batches 20]

Run it on the backend you train with (KERAS_BACKEND=tensorflow|jax|torch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PIPELINES = {
    "flip+contrast+brightness": ["augment.flip=horizontal", "augment.contrast=0.2", "augment.brightness=0.2"],
    "flip+rotation+zoom": ["augment.flip=horizontal", "augment.rotation=0.1", "augment.zoom=0.1"],
    "randaugment (2 ops)": ["augment.randaugment=2"],
    "mixup+cutmix": ["augment.mixup=0.2", "augment.cutmix=1.0"],
}


def images_per_second(fn, x, y, batches: int) -> float:
    fn(x, y, 0)  # compile / warm up
    start = time.perf_counter()
    for i in range(batches):
        fn(x, y, i + 1)
    return batches * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()

    from imgai.quiet import import_keras

    keras = import_keras()
    from imgai.augment import Augmenter
    from imgai.config import load_config
    from imgai.data import DecodeSpec

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    y = np.eye(5, dtype="float32")[np.arange(args.batch) % 5]
    print(
        f"backend {keras.backend.backend()}, {args.batch} images of "
        f"{args.size}x{args.size} per batch, {args.batches} batches"
    )
    print(f"{'pipeline':<26}{'compiled img/s':>16}{'eager img/s':>14}{'ratio':>8}")
    for name, overrides in PIPELINES.items():
        augmenter = Augmenter(load_config([], overrides).augment, DecodeSpec((args.size, args.size)), seed=1)

        def compiled(xb, yb, i):
            return augmenter(xb, yb, 0, i)

        def eager(xb, yb, i):
            out = augmenter._apply(
                augmenter.layers, keras.ops.convert_to_tensor(xb), keras.ops.convert_to_tensor(yb)
            )
            return keras.ops.convert_to_numpy(out[0]), keras.ops.convert_to_numpy(out[1])

        fast = images_per_second(compiled, x, y, args.batches)
        slow = images_per_second(eager, x, y, max(2, args.batches // 4))
        print(f"{name:<26}{fast:>16,.0f}{slow:>14,.0f}{fast / slow:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
