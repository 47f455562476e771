"""imgai data check: a data folder with every problem planted in it yields each finding exactly
once, and --fail-on gives the right exit code."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

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
    texture(100, 96).save(root / "train" / "b" / "photo.webp")  # ignored for its extension
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
    assert f["ignored"][0]["extension"] == ".webp" and "convert" in f["ignored"][0]["fix"]
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
    assert saved["summary"] == found and len(saved["files"]) == len(report.findings and saved["files"])
    rows = (tmp_path / "report" / "duplicates.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    for name in (
        "gallery_conflicts.png",
        "gallery_leakage.png",
        "gallery_duplicates.png",
        "gallery_outliers.png",
    ):
        assert (tmp_path / "report" / name).stat().st_size > 10_000
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
    with pytest.raises(ImgaiError, match="unknown kind"):
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
    assert count({"ignored": [{"count": 3}, {"count": 2}]}, "ignored") == 5
