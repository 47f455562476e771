"""How well ``imgai data check --label-issues`` finds labels flipped on purpose.

Copies the sample shapes data's train/ and val/ folders (1,000 images, 4 classes) into one flat
folder, moves 5 % of the files to another class folder (seeded), runs the check with K-fold
cross-validated training of ``configs/cnn.yaml`` and reports precision and recall of the top of
the ranking at the number flipped. Last line: one JSON object.

    PYTHONPATH=src python3 scripts/measure_label_issues.py [--folds 5] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def flip_labels(root: Path, share: float, seed: int) -> set[str]:
    """Move ``share`` of the files to a random other class folder; return their new paths."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(root.glob("*/*"))
    rng = np.random.default_rng(seed)
    moved = set()
    for i in rng.choice(len(files), size=round(share * len(files)), replace=False):
        path = files[i]
        other = [c for c in classes if c != path.parent.name][rng.integers(len(classes) - 1)]
        target = root / other / f"flipped_{path.name}"
        path.rename(target)
        moved.add(str(target))
    return moved


def precision_recall(issues: list[dict], flipped: set[str]) -> dict:
    top = {i["path"] for i in issues[: len(flipped)]}
    hits = len(top & flipped)
    return {
        "flipped": len(flipped),
        "reported": len(issues),
        "precision_at_flipped": round(hits / max(1, len(top)), 3),
        "recall_at_flipped": round(hits / max(1, len(flipped)), 3),
        "recall_all_reported": round(len({i["path"] for i in issues} & flipped) / max(1, len(flipped)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data" / "shapes"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--share", type=float, default=0.05)
    args = parser.parse_args()

    from imgai.check import run_check
    from imgai.config import load_config
    from imgai.quiet import import_keras, silence_frameworks

    silence_frameworks()
    import_keras()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for split in ("train", "val"):
            for folder in sorted((Path(args.data) / split).iterdir()):
                (root / folder.name).mkdir(parents=True, exist_ok=True)
                for f in folder.iterdir():
                    shutil.copy(f, root / folder.name / f"{split}_{f.name}")
        flipped = flip_labels(root, args.share, seed=0)
        config = load_config([REPO / "configs" / "cnn.yaml"], [f"data.root={root}"])
        start = time.perf_counter()
        report = run_check(
            config,
            Path(tmp) / "report",
            label_issues={"folds": args.folds, "epochs": args.epochs},
            progress=False,
        )
        seconds = time.perf_counter() - start
        result = precision_recall(report.findings["label-issues"], flipped)
    print(json.dumps({**result, "folds": args.folds, "epochs": args.epochs, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
