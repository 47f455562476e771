#!/usr/bin/env python3
"""Does a full-size photo fed to the model get the answer ``imgai predict`` gives?

    python scripts/bench_full_size.py --model runs/flowers/best.keras --data ../shared/datasets/flower_photos
    python scripts/bench_full_size.py --model runs/flowers/best.keras --data ... --upscale 1000x750

For each JPEG (at most --limit, a seeded sample): (a) the README's plain-Keras snippet, the full
image decoded by Pillow straight into the model, whose own Resizing layer brings it to the input
size; (b) imgai's loader (``imgai predict``'s decode path) into the same model. Prints top-1
agreement and the mean / max |Δ probability|. ``--upscale WxH`` first writes every sampled photo
resized to WxH (Pillow, bicubic, JPEG quality 90) to a temporary folder, to test large photos.
With ``--artifact model.onnx|model.tflite`` the artifact takes the full-size image through its own
documented input path instead of Keras in (a). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import benchlib  # noqa: F401  (puts src/ on the path, quiets the frameworks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a .keras file from imgai train")
    parser.add_argument("--data", required=True, help="a folder of JPEGs (searched recursively)")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--upscale", default=None, metavar="WxH")
    parser.add_argument("--artifact", default=None, help="an exported .onnx/.tflite/.xml to feed in (a)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from PIL import Image

    from imgai.data import load_images
    from imgai.modelfile import load_model
    from imgai.predict import run_inference
    from imgai.quiet import import_keras

    import_keras()
    model, info = load_model(args.model)
    files = sorted(str(p) for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    rng = np.random.RandomState(args.seed)
    files = [
        files[i] for i in np.sort(rng.choice(len(files), size=min(args.limit, len(files)), replace=False))
    ]
    tmp = None
    if args.upscale:
        width, height = (int(v) for v in args.upscale.lower().split("x"))
        tmp = tempfile.TemporaryDirectory(prefix="imgai_full_size_")
        big = []
        for i, path in enumerate(files):
            target = Path(tmp.name) / f"{i:05d}.jpg"
            with Image.open(path) as img:
                img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(target, quality=90)
            big.append(str(target))
        files = big
    runner = model
    if args.artifact:
        from imgai.artifacts import load_artifact

        runner, _ = load_artifact(args.artifact)
    plain = []
    sizes = set()
    for path in files:  # the README snippet: any size, 0..255, one image at a time
        with Image.open(path) as img:
            x = np.asarray(img.convert("RGB"), dtype="float32")[None]
        sizes.add(x.shape[1:3])
        plain.append(np.asarray(runner.predict_on_batch(x))[0])
    plain = np.asarray(plain)
    decoded = load_images(files, info.decode_spec)
    loader = run_inference(model, decoded, 32)
    delta = np.abs(plain - loader)
    result = {
        "images": len(files),
        "image_sizes": sorted({f"{w}x{h}" for h, w in sizes})[:5],
        "model_input": list(info.image_size),
        "fed_by": args.artifact or "keras",
        "agreement": round(float(np.mean(plain.argmax(1) == loader.argmax(1))), 4),
        "disagreeing": int(np.sum(plain.argmax(1) != loader.argmax(1))),
        "mean_abs_dp": round(float(delta.mean()), 6),
        "max_abs_dp": round(float(delta.max()), 6),
    }
    print(
        f"{result['images']} images ({', '.join(result['image_sizes'])}) into a {list(info.image_size)} model: "
        f"top-1 agreement {result['agreement']:.2%} ({result['disagreeing']} differ), "
        f"|Δp| mean {result['mean_abs_dp']:.5f}, max {result['max_abs_dp']:.5f}"
    )
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
