"""imgai data check: a data folder with every problem planted in it yields each finding exactly
once, and --fail-on gives the right exit code."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import run_imgai
from imgai.check import GATE_KINDS, PROPERTY_KINDS, count, gate, parse_fail_on, run_check
from imgai.config import load_config
from imgai.errors import ImgaiError
from test_dedupe import texture


def planted(root: Path) -> dict[str, str]:
    """train/{a,b,c,empty}, val/{a,b}: distinct textures, plus one of each problem."""
    seed = 0
    for split, n in (("train", 5), ("val", 2)):
        for cls in ("a", "b", "c") if split == "train" else ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for k in range(n):
                texture(seed, 96).save(folder / f"{cls}{k}.jpg", quality=92)
                seed += 1
    (root / "train" / "empty").mkdir()  # empty class; c has no val folder: missing from val
    good = (root / "train" / "a" / "a0.jpg").read_bytes()
    (root / "train" / "a" / "broken.jpg").write_bytes(good[: len(good) // 3])  # corrupt
    texture(100, 96).save(root / "train" / "b" / "photo.ico")  # ignored for its extension
    placeholder = Image.new("RGB", (96, 96), (200, 220, 255))
    ImageDraw.Draw(placeholder).text((8, 40), "not found", fill=(90, 90, 90))
    placeholder.save(root / "train" / "a" / "missing.gif")  # outlier: GIF, placeholder-like
    shutil.copy(root / "train" / "b" / "b0.jpg", root / "train" / "b" / "b0 copy.jpg")  # exact, same class
    buffer = io.BytesIO()
    Image.open(root / "train" / "a" / "a1.jpg").save(buffer, "JPEG", quality=50)
    (root / "train" / "c" / "relabelled.jpg").write_bytes(buffer.getvalue())  # near, other class
    Image.open(root / "train" / "a" / "a2.jpg").resize((64, 64)).save(root / "val" / "a" / "leak.jpg")
    return {"root": str(root)}


EXPECTED = {
    "corrupt": 1,
    "ignored": 1,
    "empty-class": 1,
    "missing-class": 1,
    "outliers": 1,
    "duplicates": 3,
    "conflicts": 1,
    "leakage": 1,
    "label-issues": 0,
}


@pytest.fixture()
def planted_root(tmp_path) -> Path:
    planted(tmp_path / "data")
    return tmp_path / "data"


def test_every_planted_problem_is_found_exactly_once(planted_root, tmp_path):
    config = load_config([], [f"data.root={planted_root}", "data.image_size=64"])
    report = run_check(config, tmp_path / "report", log=lambda _m: None, progress=False)
    found = report.summary()
    assert {k: found[k] for k in GATE_KINDS} == EXPECTED
    assert all(found[k] == 0 for k in PROPERTY_KINDS), found
    f = report.findings
    assert f["corrupt"][0]["path"].endswith("broken.jpg")
    assert f["ignored"][0]["extension"] == ".ico" and "convert" in f["ignored"][0]["fix"]
    assert f["empty-class"][0]["class"] == "empty"
    assert (f["missing-class"][0]["class"], f["missing-class"][0]["split"]) == ("c", "val")
    assert f["outliers"][0]["path"].endswith("missing.gif") and "placeholder" in f["outliers"][0]["detail"]
    kinds = {
        frozenset(Path(m["path"]).name for m in g["members"]): (g["type"], g["conflict"], g["leakage"])
        for g in f["duplicates"]
    }
    assert kinds == {
        frozenset({"b0.jpg", "b0 copy.jpg"}): ("exact", False, False),
        frozenset({"a1.jpg", "relabelled.jpg"}): ("near", True, False),
        frozenset({"a2.jpg", "leak.jpg"}): ("near", False, True),
    }
    saved = json.loads((tmp_path / "report" / "check.json").read_text())
    assert saved["summary"] == found and len(saved["files"]) == 24  # every file listed, unreadable too
    rows = (tmp_path / "report" / "duplicates.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    for name in (
        "gallery_conflicts.png",
        "gallery_leakage.png",
        "gallery_duplicates.png",
        "gallery_outliers.png",
    ):
        pixels = np.asarray(Image.open(tmp_path / "report" / name))
        assert pixels.shape[0] > 180 and pixels.shape[1] >= 2 * 180 and pixels.std() > 20, name
    passed, text = gate(report, ["leakage", "corrupt", "label-issues"])
    assert not passed and text.count("FAILED") == 3 and "PASSED  label-issues: 0 found" in text


def test_validation_split_is_the_training_split(planted_root, tmp_path):
    """With validation_split, the check's val files are exactly training's."""
    from imgai.data import resolve_splits

    flat = tmp_path / "flat"
    shutil.copytree(planted_root / "train", flat)
    shutil.rmtree(flat / "empty")
    config = load_config([], [f"data.root={flat}", "data.validation_split=0.3", "data.image_size=64"])
    report = run_check(config, tmp_path / "r", log=lambda _m: None, progress=False)
    files = json.loads((tmp_path / "r" / "check.json").read_text())["files"]
    val = {r["path"] for r in files if r["split"] == "val"}
    assert val == set(resolve_splits(config.data, config.seed).val.paths)
    assert sum(report.counts["val"].values()) == sum(r["ok"] for r in files if r["split"] == "val")


def test_reports_are_never_overwritten(planted_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config([], [f"data.root={planted_root}", "data.image_size=64"])
    first = run_check(config, None, log=lambda _m: None, progress=False).out_dir
    second = run_check(config, None, log=lambda _m: None, progress=False).out_dir
    assert (first.name, second.name) == ("check1", "check2")
    with pytest.raises(ImgaiError, match="never overwritten"):
        run_check(config, first, log=lambda _m: None, progress=False)


def test_unknown_fail_on_kind_is_a_usage_error():
    assert parse_fail_on("leakage, corrupt") == ["leakage", "corrupt"]
    with pytest.raises(ImgaiError, match="`fail_on`: unknown kind"):
        parse_fail_on("leaks")


@pytest.mark.slow
def test_cli_exit_codes(planted_root, tmp_path):
    fails = run_imgai(
        "data",
        "check",
        str(planted_root),
        "data.image_size=64",
        "-o",
        str(tmp_path / "o1"),
        "--fail-on",
        "leakage,conflicts,corrupt,empty-class,ignored",
        cwd=tmp_path,
    )
    assert fails.returncode == 1, fails.stderr
    assert fails.stdout.count("FAILED  ") == 5 and "Details:" in fails.stdout
    clean = tmp_path / "clean"
    for cls in ("x", "y"):
        (clean / cls).mkdir(parents=True)
        for k in range(3):
            texture(50 + k + (10 if cls == "y" else 0), 64).save(clean / cls / f"{k}.png")
    ok = run_imgai(
        "data", "check", str(clean), "-o", str(tmp_path / "o2"), "--fail-on", "leakage,corrupt", cwd=tmp_path
    )
    assert ok.returncode == 0 and ok.stdout.count("PASSED  ") == 2, ok.stdout + ok.stderr
    usage = run_imgai("data", "check", str(clean), "--fail-on", "leaks", cwd=tmp_path)
    assert usage.returncode == 2 and "unknown kind" in usage.stderr and "Traceback" not in usage.stderr
    assert usage.stderr.startswith("Error: --fail-on: ")  # the library's `fail_on`, in the CLI's words
    assert count({"ignored": [{"count": 3}, {"count": 2}]}, "ignored") == 5


def test_training_warnings_come_from_what_training_decoded(tmp_path):
    from imgai.data import load_images, resolve_splits, training_warnings

    root = tmp_path / "d"
    seed = 0
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("a", "b", "none"):
            (root / split / cls).mkdir(parents=True)
            if cls != "none":
                for k in range(n):
                    texture(seed, 48).save(root / split / cls / f"{k}.png")
                    seed += 1
    (root / "train" / "a" / "notes.txt").write_text("x")
    shutil.copy(root / "train" / "b" / "1.png", root / "val" / "b" / "copy.png")
    splits = resolve_splits(load_config([], [f"data.root={root}"]).data, seed=1)
    decode = lambda fl: load_images(fl, (32, 32), progress=False)  # noqa: E731
    lines = training_warnings(splits, decode(splits.train), decode(splits.val))
    assert len(lines) == 3
    assert "none" in lines[0] and ".txt 1" in lines[1] and lines[2].startswith("Warning: 1 validation image")
    clean = load_config([], [f"data.root={root}"]).data
    shutil.rmtree(root / "train" / "none"), shutil.rmtree(root / "val" / "none")
    (root / "train" / "a" / "notes.txt").unlink(), (root / "val" / "b" / "copy.png").unlink()
    splits = resolve_splits(clean, seed=1)
    assert training_warnings(splits, decode(splits.train), decode(splits.val)) == []


def colour_classes(root: Path, per_class: int, flip_share: float, seed: int = 0) -> set[str]:
    """Four classes a tiny model learns in a few epochs (each its own hue), then ``flip_share``
    of the files moved to another class folder; returns the moved paths."""
    rng = np.random.default_rng(seed)
    hues = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (210, 200, 40)}
    for cls, colour in hues.items():
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            pixels = np.clip(np.asarray(colour) + rng.normal(0, 35, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}{k}.png")
    files = sorted(root.glob("*/*.png"))
    moved = set()
    for i in rng.choice(len(files), size=round(flip_share * len(files)), replace=False):
        other = [c for c in hues if c != files[i].parent.name][rng.integers(3)]
        target = root / other / files[i].name
        files[i].rename(target)
        moved.add(str(target))
    return moved


@pytest.mark.slow
def test_label_issues_rank_the_flipped_labels_first(tmp_path):
    """6 of 120 labels flipped (5 %); 3 folds of 10 epochs of a tiny CNN: the top 6 of the ranking
    hold at least 5 of them (measured: 5, in two runs; at a learning rate of 0.01 one fold's
    tiny model can stall at chance, and the ranking then finds 4)."""
    pytest.importorskip("cleanlab")
    pytest.importorskip("keras")
    root = tmp_path / "colours"
    flipped = colour_classes(root, 30, 0.05)
    tiny = ["data.image_size=32", "data.batch_size=8", "model.filters=[8]", "model.dense_units=8"]
    config = load_config([], [f"data.root={root}", *tiny, "train.learning_rate=0.003"])
    messages = []
    options = {"folds": 3, "epochs": 10}
    report = run_check(config, tmp_path / "r", log=messages.append, label_issues=options, progress=False)
    assert "3 trainings of 10 epoch(s)" in messages[1]  # the cost, said before it starts
    issues = report.findings["label-issues"]
    top = {i["path"] for i in issues[: len(flipped)]}
    assert len(flipped) == 6 and len(top & flipped) >= 5, issues[:8]
    assert (tmp_path / "r" / "label_issues.csv").read_text().count("\n") == 1 + len(issues)
    assert (tmp_path / "r" / "gallery_label_issues.png").is_file()


def test_image_properties_are_reported(tmp_path):
    """Grayscale, alpha, 16-bit, tiny, extreme aspect (PNG class); CMYK, EXIF-rotated (JPEG class)."""
    root = tmp_path / "props"
    for cls, ext in (("a", "png"), ("b", "jpg")):
        (root / cls).mkdir(parents=True)
        for k in range(8):
            texture(200 + k + (50 if cls == "b" else 0), 96).save(root / cls / f"{k}.{ext}")
    a, b = root / "a", root / "b"
    texture(300, 96).convert("L").save(a / "gray.png")
    texture(301, 96).convert("RGBA").save(a / "alpha.png")
    Image.fromarray(np.asarray(texture(302, 96).convert("L"), dtype=np.uint16) * 257).save(a / "deep.png")
    texture(303, 8).save(a / "tiny.png")
    texture(304, 200).resize((200, 40)).save(a / "wide.png")
    texture(305, 96).convert("CMYK").save(b / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    texture(306, 96).save(b / "rotated.jpg", exif=exif.tobytes())
    config = load_config([], [f"data.root={root}", "data.image_size=64"])
    found = run_check(config, tmp_path / "r", log=lambda _m: None, progress=False).findings
    names = {k: sorted(Path(x["path"]).name for x in found[k]) for k in PROPERTY_KINDS}
    assert names == {
        "tiny": ["tiny.png"],
        "aspect": ["wide.png"],
        "grayscale": ["deep.png", "gray.png"],
        "cmyk": ["cmyk.jpg"],
        "alpha": ["alpha.png"],
        "16-bit": ["deep.png"],
        "exif-orientation": ["rotated.jpg"],
    }
    assert found["outliers"] == [] and found["corrupt"] == []
