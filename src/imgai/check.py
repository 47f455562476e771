"""``imgai data check``: what would silently spoil training, found before anyone trains.

The check scans the data set as training would (the same folders, class order and split from
:mod:`imgai.data`, the same decoder on every core) and, in that one decode, hashes each image
(:mod:`imgai.dedupe`) and reads its header. It reports, per class and split:

- counts; unreadable files with the reason; files skipped for their extension, with the fix;
  empty classes; classes missing from a split;
- outliers within a class: another file format than the rest of the class, placeholder-like
  (nearly flat) images;
- properties that bite later: tiny images (under a quarter of the model input), extreme aspect
  ratios, grayscale, CMYK, alpha, 16-bit, an EXIF orientation other than "as stored";
- exact duplicates (identical decoded pixels) and near duplicates (perceptual hashes at most
  ``data.near_duplicate_distance`` bits apart), grouped; a group holding several classes is a
  label conflict, one spread over several splits is leakage.

:func:`run_check` writes ``check.json`` (every finding), ``duplicates.csv`` and PNG galleries into
a new report folder, and returns the report; :func:`gate` turns ``--fail-on`` into PASSED/FAILED.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imgai.errors import ImgaiError
from imgai.plots import percent

# Findings --fail-on can name, in the order the summary lists them.
GATE_KINDS = (
    "corrupt",
    "ignored",
    "empty-class",
    "missing-class",
    "outliers",
    "duplicates",
    "conflicts",
    "leakage",
    "label-issues",
)
# Image properties: reported per file, not problems by themselves.
PROPERTY_KINDS = ("tiny", "aspect", "grayscale", "cmyk", "alpha", "16-bit", "exif-orientation")
TINY_FACTOR = 4  # smaller than the model input by this factor on a side
EXTREME_ASPECT = 3.0  # longer side over shorter side
FLAT_LEVELS = 6  # placeholder-like: nearly every pixel of the 32x32 copy within this of the median
FLAT_SHARE = 0.94  # a daisy on black reached 0.91; a "not found" GIF 0.96
MAJORITY = 0.8  # a format held by this share of a class makes the other formats outliers
GALLERY_GROUPS = 20  # groups per gallery PNG
GALLERY_WIDTH = 6  # images per group row

CHECK_FILE = "check.json"
DUPLICATES_FILE = "duplicates.csv"


@dataclass
class Record:
    """What the check learnt about one file."""

    path: str
    split: str
    label: int
    ok: bool = False
    reason: str = ""
    format: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    bits: int = 8
    orientation: int = 1
    alpha: bool = False
    gray_pixels: bool = False  # stored as colour, every pixel grey
    flat: bool = False
    digest: str = ""
    phash: int = 0


@dataclass
class Scan:
    """The files of every split as training would see them, plus what training skips."""

    class_names: list[str]
    records: list[Record]
    ignored: list[tuple[str, str, str]]  # (split, class, path)
    class_dirs: dict[str, dict[str, bool]]  # split -> class -> folder exists
    folders: dict[str, str]
    made_split: bool  # imgai made the validation split from data.validation_split
    training_classes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- scanning


def scan(data_cfg, seed: int) -> Scan:
    """List every split's files as :func:`imgai.data.resolve_splits` does, without refusing
    mismatched class folders or empty data (they become findings instead)."""
    from imgai.data import iter_image_files, list_class_folders, split_folders

    train_dir, val_dir, test_dir = split_folders(data_cfg)
    folders = {k: v for k, v in (("train", train_dir), ("val", val_dir), ("test", test_dir)) if v is not None}
    per_split = {name: list_class_folders(folder) for name, folder in folders.items()}
    training_classes = per_split["train"]
    extra = sorted({c for names in per_split.values() for c in names} - set(training_classes))
    class_names = training_classes + extra
    records: list[Record] = []
    ignored: list[tuple[str, str, str]] = []
    class_dirs: dict[str, dict[str, bool]] = {}
    for split, folder in folders.items():
        present = set(per_split[split])
        class_dirs[split] = {c: c in present for c in class_names}
        for label, cls in enumerate(class_names):
            if cls not in present:
                continue
            skipped: list[str] = []
            records.extend(
                Record(p, split, label) for p in iter_image_files(Path(folder) / cls, ignored=skipped)
            )
            ignored.extend((split, cls, p) for p in skipped)
    return Scan(
        class_names,
        records,
        ignored,
        class_dirs,
        {k: str(v) for k, v in folders.items()},
        made_split="val" not in folders and bool(data_cfg.validation_split),
        training_classes=training_classes,
    )


def _header(data: bytes, record: Record) -> None:
    """Format, mode, size, bit depth, alpha and EXIF orientation from the file's header (Pillow
    opens lazily: this parses the header, it does not decode the pixels again)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        record.format = img.format or ""
        record.mode = img.mode
        record.width, record.height = img.size
        record.alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info
        )
        if img.mode.startswith("I;16") or img.mode == "I":
            record.bits = 16
        elif data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
            record.bits = data[24]  # IHDR bit depth (Pillow reads 16-bit colour PNGs as 8-bit RGB)
        try:
            record.orientation = int(img.getexif().get(0x0112, 1) or 1)
        except Exception:  # a broken EXIF block is not a broken image
            record.orientation = 1


def decode_and_hash(scan_result: Scan, spec, workers: int = 0, progress: bool = True) -> float:
    """One pass of the training decoder over every file, hashing on the decoding threads.
    Fills each :class:`Record`; returns the seconds it took."""
    from imgai.data import Progress, decode_files
    from imgai.dedupe import luma, phash, pixel_digest, small_copy

    records = scan_result.records
    paths = [r.path for r in records]

    def inspect(index: int, data: bytes, rgb: np.ndarray) -> None:
        record = records[index]
        try:
            _header(data, record)
        except Exception:  # decoded by simplejpeg although Pillow cannot parse the header
            record.format, record.mode = "JPEG", "RGB"
            record.height, record.width = rgb.shape[:2]
        small = small_copy(rgb)
        gray = luma(small)
        record.phash = phash(gray)
        record.digest = pixel_digest(rgb)
        record.flat = float(np.mean(np.abs(gray - np.median(gray)) <= FLAT_LEVELS)) >= FLAT_SHARE
        if record.mode in ("RGB", "RGBA", "P", "CMYK"):
            spread = np.ptp(small, axis=-1) if small.shape[-1] == 3 else np.zeros(1)
            record.gray_pixels = float(spread.max()) <= 2.0

    bar = Progress("checking", len(paths), progress)
    for index, _image, reason in decode_files(
        paths,
        spec,
        workers,
        store=lambda index, image: None,  # only the hashes are kept
        inspect=inspect,
    ):
        records[index].ok = reason is None
        records[index].reason = reason or ""
        bar.update(index + 1)
    return bar.close()


def assign_splits(scan_result: Scan, data_cfg, seed: int) -> None:
    """Make the validation split as training would (``data.validation_split``, and the grouping
    of ``data.split_groups`` / ``data.group_pattern`` from the hashes already made)."""
    if not scan_result.made_split:
        return
    from imgai.data import FileList, split_files, split_groups

    train = [r for r in scan_result.records if r.split == "train"]
    files = FileList(
        [r.path for r in train],
        np.asarray([r.label for r in train], dtype=np.int32),
        scan_result.class_names,
        scan_result.folders["train"],
    )
    phashes = np.asarray([r.phash for r in train], dtype=np.uint64)
    ok = np.asarray([r.ok for r in train], dtype=bool)
    groups = split_groups(files, data_cfg, (phashes, ok))
    _, val = split_files(files, data_cfg.validation_split, seed, data_cfg.shuffle, groups)
    in_val = set(val.paths)
    for r in train:
        if r.path in in_val:
            r.split = "val"


# ----------------------------------------------------------------------------------- findings


def _rel(path: str, scan_result: Scan) -> str:
    for folder in scan_result.folders.values():
        if path.startswith(folder.rstrip("/") + "/"):
            return path[len(folder.rstrip("/")) + 1 :]
    return path


def _ignored_fix(ext: str) -> str:
    from PIL import Image

    from imgai.data import IMAGE_EXTENSIONS

    readable = ", ".join(IMAGE_EXTENSIONS)
    if ext and ext in Image.registered_extensions():
        return (
            f"training reads only {readable}: convert them (e.g. mogrify -format png *{ext}) or move "
            "them out of the class folders"
        )
    return (
        f"not an image type imgai reads ({readable}): move them out of the class folders if they are images"
    )


def duplicate_groups(records: list[Record], max_distance: int) -> list[dict]:
    """Groups of exact or near duplicates among the readable ``records``, each classified."""
    from imgai.dedupe import components, hamming, near_pairs

    kept = [i for i, r in enumerate(records) if r.ok]
    hashes = np.asarray([records[i].phash for i in kept], dtype=np.uint64)
    pairs = near_pairs(hashes, max_distance)
    by_digest: dict[str, list[int]] = {}
    for position, i in enumerate(kept):
        by_digest.setdefault(records[i].digest, []).append(position)
    exact_pairs = [(m[0], o) for m in by_digest.values() if len(m) > 1 for o in m[1:]]
    if exact_pairs:
        pairs = np.concatenate([pairs, np.asarray(exact_pairs, dtype=np.int64)])
    if len(pairs) == 0:
        return []
    comp = components(len(kept), pairs)
    members: dict[int, list[int]] = {}
    for position in np.unique(pairs):
        members.setdefault(int(comp[position]), []).append(kept[int(position)])
    groups = []
    for indices in members.values():
        indices.sort(key=lambda i: (records[i].split != "train", records[i].split, records[i].path))
        first = records[indices[0]]
        labels = {records[i].label for i in indices}
        splits = {records[i].split for i in indices}
        exact = len({records[i].digest for i in indices}) == 1
        groups.append(
            {
                "type": "exact" if exact else "near",
                "conflict": len(labels) > 1,
                "leakage": len(splits) > 1,
                "members": [
                    {
                        "split": records[i].split,
                        "label": records[i].label,
                        "path": records[i].path,
                        "distance": hamming(first.phash, records[i].phash),
                        "same_pixels": records[i].digest == first.digest,
                    }
                    for i in indices
                ],
            }
        )
    groups.sort(key=lambda g: (not g["conflict"], not g["leakage"], g["members"][0]["path"]))
    for number, group in enumerate(groups, 1):
        group["group"] = number
    return groups


def find_problems(scan_result: Scan, spec, max_distance: int) -> dict:
    """Every finding of the scanned and hashed data set, by kind."""
    names = scan_result.class_names
    records = scan_result.records
    findings: dict[str, list[dict]] = {kind: [] for kind in GATE_KINDS + PROPERTY_KINDS}
    for r in records:
        if not r.ok:
            findings["corrupt"].append(
                {"split": r.split, "class": names[r.label], "path": r.path, "reason": r.reason}
            )
    by_ext: dict[str, list[str]] = {}
    for _split, _cls, path in scan_result.ignored:
        by_ext.setdefault(os.path.splitext(path)[1].lower(), []).append(path)
    for ext, paths in sorted(by_ext.items()):
        findings["ignored"].append(
            {"extension": ext or "(none)", "count": len(paths), "fix": _ignored_fix(ext), "paths": paths}
        )
    splits = list(scan_result.class_dirs) if not scan_result.made_split else ["train", "val"]
    counts = {s: [0] * len(names) for s in splits}
    for r in records:
        if r.ok:
            counts[r.split][r.label] += 1
    for label, cls in enumerate(names):
        per = {s: counts[s][label] for s in splits}
        if not any(per.values()):
            findings["empty-class"].append(
                {
                    "class": cls,
                    "detail": "no readable image in any split"
                    + (" (only ignored or unreadable files)" if _has_files(scan_result, cls) else ""),
                    "fix": "add images or remove the folder: an empty class folder is still trained as a class",
                }
            )
            continue
        for split, count in per.items():
            if count == 0:
                folder_missing = not scan_result.class_dirs.get(split, {}).get(cls, True)
                findings["missing-class"].append(
                    {
                        "class": cls,
                        "split": split,
                        "detail": f"no {split} images"
                        + (
                            " (no folder: imgai train stops until every split has it)"
                            if folder_missing
                            else ""
                        )
                        + f"; {', '.join(f'{s} {c}' for s, c in per.items() if c)}",
                    }
                )
    ok = [r for r in records if r.ok]
    formats: dict[int, Counter] = {}
    for r in ok:
        formats.setdefault(r.label, Counter())[r.format] += 1
    height, width = spec.image_size
    for r in ok:
        where = {"split": r.split, "class": names[r.label], "path": r.path}
        reasons = []
        common, share = formats[r.label].most_common(1)[0]
        share /= sum(formats[r.label].values())
        if r.format != common and share >= MAJORITY:
            reasons.append(f"{r.format or 'unknown'} file among {percent(share)} {common} in its class")
        if r.flat:
            reasons.append("placeholder-like: nearly one flat colour")
        if reasons:
            findings["outliers"].append({**where, "detail": "; ".join(reasons)})
        if r.width * TINY_FACTOR < width or r.height * TINY_FACTOR < height:
            findings["tiny"].append({**where, "detail": f"{r.width}x{r.height} for a {width}x{height} input"})
        if max(r.width, r.height) > EXTREME_ASPECT * max(1, min(r.width, r.height)):
            findings["aspect"].append({**where, "detail": f"{r.width}x{r.height}"})
        if r.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I") or r.gray_pixels:
            detail = f"mode {r.mode}" + (", colour channels all equal" if r.gray_pixels else "")
            findings["grayscale"].append({**where, "detail": detail})
        if r.mode == "CMYK":
            findings["cmyk"].append({**where, "detail": "CMYK"})
        if r.alpha:
            findings["alpha"].append(
                {**where, "detail": f"mode {r.mode}: transparency is composited on black"}
            )
        if r.bits > 8:
            findings["16-bit"].append({**where, "detail": f"{r.bits} bits per channel, read as its top 8"})
        if r.orientation != 1:
            findings["exif-orientation"].append({**where, "detail": f"EXIF orientation {r.orientation}"})
    groups = duplicate_groups(records, max_distance)
    for group in groups:
        for member in group["members"]:
            member["class"] = names[member.pop("label")]
    findings["duplicates"] = groups
    findings["conflicts"] = [g["group"] for g in groups if g["conflict"]]
    findings["leakage"] = [g["group"] for g in groups if g["leakage"]]
    return findings


def _has_files(scan_result: Scan, cls: str) -> bool:
    return any(c == cls for _s, c, _p in scan_result.ignored) or any(
        scan_result.class_names[r.label] == cls for r in scan_result.records
    )


def count(findings: dict, kind: str) -> int:
    """How many findings of ``kind`` (ignored: files, not extensions)."""
    if kind == "ignored":
        return sum(item["count"] for item in findings.get("ignored", []))
    return len(findings.get(kind, []))


def split_counts(scan_result: Scan) -> dict[str, dict[str, int]]:
    splits = list(scan_result.class_dirs) if not scan_result.made_split else ["train", "val"]
    table = {s: dict.fromkeys(scan_result.class_names, 0) for s in splits}
    for r in scan_result.records:
        if r.ok:
            table[r.split][scan_result.class_names[r.label]] += 1
    return table


# ------------------------------------------------------------------------------------- output


def create_report_dir(output_dir: str | Path | None, parent: str | Path = "checks") -> Path:
    """``output_dir`` (new or empty), else the next free ``checks/checkN``: a report is never
    overwritten."""
    if output_dir is not None:
        path = Path(output_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ImgaiError(
                f"report folder '{path}' exists and is not empty: reports are never overwritten; "
                "choose another `output_dir`"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := re.fullmatch(r"check(\d+)", p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = parent / f"check{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def write_duplicates_csv(path: Path, groups: list[dict]) -> None:
    from imgai.runs import atomic_path

    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["group", "type", "conflict", "leakage", "split", "class", "path", "distance", "same_pixels"]
        )
        for g in groups:
            for m in g["members"]:
                writer.writerow(
                    [
                        g["group"],
                        g["type"],
                        int(g["conflict"]),
                        int(g["leakage"]),
                        m["split"],
                        m["class"],
                        m["path"],
                        m["distance"],
                        int(m["same_pixels"]),
                    ]
                )


def _short(path: str, scan_result: Scan, limit: int = 26) -> str:
    name = os.path.basename(path)
    return name if len(name) <= limit else name[: limit - 9] + "…" + name[-8:]


def _wrap(text: str, width: int = 34) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def write_galleries(out: Path, findings: dict, scan_result: Scan) -> list[Path]:
    """PNG galleries: conflicts, leakage, other duplicates (a row per group), outliers."""
    from imgai.plots import plot_image_rows

    written = []
    groups = findings["duplicates"]
    for name, title, chosen in (
        (
            "gallery_conflicts.png",
            "Label conflicts: one picture under several classes",
            [g for g in groups if g["conflict"]],
        ),
        (
            "gallery_leakage.png",
            "Leakage: the same picture in several splits",
            [g for g in groups if g["leakage"] and not g["conflict"]],
        ),
        (
            "gallery_duplicates.png",
            "Duplicates within one class and split",
            [g for g in groups if not g["leakage"] and not g["conflict"]],
        ),
    ):
        if not chosen:
            continue
        rows = []
        for g in chosen[:GALLERY_GROUPS]:
            more = f", first {GALLERY_WIDTH} shown" if len(g["members"]) > GALLERY_WIDTH else ""
            rows.append(
                [
                    (
                        m["path"],
                        (
                            f"GROUP {g['group']} ({g['type']}, {len(g['members'])} files{more})\n"
                            if k == 0
                            else "\n"
                        )
                        + f"{m['split']} / {m['class']}\n{_short(m['path'], scan_result)}\n"
                        + (
                            "first of the group"
                            if k == 0
                            else (
                                "same pixels" if m["same_pixels"] else f"{m['distance']} bits from the first"
                            )
                        ),
                    )
                    for k, m in enumerate(g["members"])
                ]
            )
        shown = f" (first {GALLERY_GROUPS} of {len(chosen)} groups)" if len(chosen) > GALLERY_GROUPS else ""
        written.append(plot_image_rows(rows, out / name, title + shown, max_columns=GALLERY_WIDTH))
    outliers = findings["outliers"][: GALLERY_GROUPS * 4]
    if outliers:
        items = [
            (
                o["path"],
                _wrap(f"{o['split']} / {o['class']}\n{_short(o['path'], scan_result)}\n{o['detail']}"),
            )
            for o in outliers
        ]
        rows = [items[i : i + 4] for i in range(0, len(items), 4)]
        written.append(
            plot_image_rows(rows, out / "gallery_outliers.png", "Outliers: unlike the rest of their class")
        )
    return written


# ---------------------------------------------------------------------------------------- run


@dataclass
class CheckReport:
    out_dir: Path
    findings: dict
    counts: dict[str, dict[str, int]]
    class_names: list[str]
    seconds: dict[str, float]
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {kind: count(self.findings, kind) for kind in GATE_KINDS + PROPERTY_KINDS}


def run_check(
    config,
    output_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    label_issues: dict | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check ``config``'s data set; write the report folder; return the report.
    ``label_issues``: keyword arguments for :func:`imgai.label_issues.find_label_issues`
    (``folds``, ``epochs``), or None to skip the cross-validated training."""
    from imgai.data import DecodeSpec, default_workers

    data_cfg = config.data
    spec = DecodeSpec.from_config(data_cfg)
    started = time.perf_counter()
    scan_result = scan(data_cfg, config.seed)
    out = create_report_dir(output_dir)
    log(
        f"Checking {len(scan_result.records)} images in {len(scan_result.class_names)} classes "
        f"({', '.join(f'{k}: {v}' for k, v in scan_result.folders.items())}) on {default_workers(data_cfg.workers)} "
        f"thread(s); report: {out}"
    )
    decode_seconds = decode_and_hash(scan_result, spec, data_cfg.workers, progress)
    assign_splits(scan_result, data_cfg, config.seed)
    t = time.perf_counter()
    findings = find_problems(scan_result, spec, data_cfg.near_duplicate_distance)
    search_seconds = time.perf_counter() - t
    seconds = {"decode_and_hash": round(decode_seconds, 2), "search": round(search_seconds, 3)}
    if label_issues is not None:
        from imgai.label_issues import find_label_issues

        t = time.perf_counter()
        findings["label-issues"] = find_label_issues(config, scan_result, out, log=log, **label_issues)
        seconds["label_issues"] = round(time.perf_counter() - t, 1)
    report = CheckReport(out, findings, split_counts(scan_result), scan_result.class_names, seconds)
    write_duplicates_csv(out / DUPLICATES_FILE, findings["duplicates"])
    t = time.perf_counter()
    report.files = [out / CHECK_FILE, out / DUPLICATES_FILE] + write_galleries(out, findings, scan_result)
    seconds["galleries"] = round(time.perf_counter() - t, 2)
    if label_issues is not None:
        report.files += [out / "label_issues.csv"] + (
            [out / "gallery_label_issues.png"] if findings["label-issues"] else []
        )
    from imgai.runs import atomic_write_text

    seconds["total"] = round(time.perf_counter() - started, 2)
    document = {
        "data": {
            **scan_result.folders,
            "validation_split": data_cfg.validation_split if scan_result.made_split else None,
            "seed": config.seed,
            "image_size": list(spec.image_size),
            "near_duplicate_distance": data_cfg.near_duplicate_distance,
            "split_groups": data_cfg.split_groups,
            "group_pattern": data_cfg.group_pattern,
            "classes": scan_result.class_names,
            "training_classes": scan_result.training_classes,
        },
        "counts": report.counts,
        "summary": report.summary(),
        "findings": findings,
        "seconds": seconds,
        "files": [{**asdict(r), "phash": f"{r.phash:016x}"} for r in scan_result.records],
    }
    atomic_write_text(out / CHECK_FILE, json.dumps(document, indent=1))
    return report


def format_summary(report: CheckReport) -> str:
    """The terminal summary: counts per class and split, then one line per kind found."""
    splits = list(report.counts)
    names = report.class_names
    width = max(len(n) for n in names + ["class"])
    lines = [f"  {'class':<{width}}" + "".join(f"{s:>8}" for s in splits)]
    for cls in names:
        lines.append(f"  {cls:<{width}}" + "".join(f"{report.counts[s][cls]:>8}" for s in splits))
    lines.append(f"  {'total':<{width}}" + "".join(f"{sum(report.counts[s].values()):>8}" for s in splits))
    f = report.findings
    groups = f["duplicates"]
    exact = [g for g in groups if g["type"] == "exact"]
    extra = sum(len(g["members"]) - 1 for g in exact)
    about = {
        "corrupt": "unreadable file(s): training skips them",
        "ignored": "file(s) ignored for their extension"
        + (
            f" ({', '.join(i['extension'] + ' ' + str(i['count']) for i in f['ignored'])})"
            if f["ignored"]
            else ""
        ),
        "empty-class": "empty class(es): " + ", ".join(e["class"] for e in f["empty-class"]),
        "missing-class": "class(es) missing from a split: "
        + ", ".join(f"{m['class']} ({m['split']})" for m in f["missing-class"]),
        "outliers": "outlier(s): another format than the rest of their class, or placeholder-like",
        "duplicates": f"duplicate group(s): {len(exact)} of identical pixels ({extra} extra copies), "
        f"{len(groups) - len(exact)} of near duplicates",
        "conflicts": "label conflict(s): one picture under several classes",
        "leakage": "leak(s): one picture in several splits",
        "label-issues": "likely label error(s) (cross-validated, cleanlab)",
        "tiny": "tiny image(s)",
        "aspect": "extreme aspect ratio(s)",
        "grayscale": "grayscale image(s)",
        "cmyk": "CMYK image(s)",
        "alpha": "image(s) with transparency",
        "16-bit": "16-bit image(s)",
        "exif-orientation": "image(s) with an EXIF rotation",
    }
    found = [(k, count(f, k)) for k in GATE_KINDS + PROPERTY_KINDS if count(f, k)]
    lines.append("Found:" if found else "Found nothing to report.")
    lines += [f"  {n:>5}  {about[k]}" for k, n in found]
    lines.append(
        f"Details: {report.out_dir / CHECK_FILE}" + (f" ({len(report.files) - 1} more file(s) beside it)")
    )
    return "\n".join(lines)


def parse_fail_on(text: str | None) -> list[str]:
    """``fail_on`` (comma-separated, the CLI's ``--fail-on``) as kinds; an unknown one is a usage error."""
    if not text:
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in GATE_KINDS]
    if unknown:
        raise ImgaiError(
            f"`fail_on`: unknown kind(s) {', '.join(unknown)}: choose from {', '.join(GATE_KINDS)}"
        )
    return kinds


def gate(report: CheckReport, kinds: list[str]) -> tuple[bool, str]:
    """One PASSED/FAILED line per kind; passed when none of ``kinds`` was found."""
    lines = ["Data gate:"]
    failed = 0
    for kind in kinds:
        n = count(report.findings, kind)
        failed += n > 0
        lines.append(f"  {'FAILED' if n else 'PASSED'}  {kind}: {n} found")
    lines.append(
        f"  {'FAILED' if failed else 'PASSED'}: {len(kinds) - failed} of {len(kinds)} check(s) passed"
    )
    return failed == 0, "\n".join(lines)
