#!/usr/bin/env python3
"""Regenerate the sample data set in data/shapes (offline, deterministic).

    python scripts/make_sample_data.py            # writes data/shapes (must not exist)
    python scripts/make_sample_data.py --out /tmp/shapes --per-class 500

Same as `imgai data sample`; kept as a script so the data's origin is obvious from the repo.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from imgai.sample_data import make_shapes_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="data/shapes", help="output folder (default: data/shapes)")
    parser.add_argument(
        "--per-class", type=int, default=200, help="training images per class; val/test get a quarter"
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        if not args.force:
            sys.exit(f"{out} exists; pass --force to replace it")
        shutil.rmtree(out)
    quarter = max(1, args.per_class // 4)
    written = make_shapes_dataset(
        out, {"train": args.per_class, "val": quarter, "test": quarter}, size=args.size, seed=args.seed
    )
    print(f"Wrote {sum(written.values())} images to {out}: {written}")


if __name__ == "__main__":
    main()
