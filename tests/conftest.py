"""Shared fixtures: tiny generated image folders, so no test needs the network or ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgai.sample_data import make_shapes_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def split_dataset(tmp_path_factory) -> Path:
    """root/{train,val,test}/{circle,square,triangle}/*.png at 32x32 — tiny and fast."""
    root = tmp_path_factory.mktemp("shapes_split")
    make_shapes_dataset(
        root, {"train": 12, "val": 4, "test": 4}, shapes=("circle", "square", "triangle"), size=32, fmt="png"
    )
    return root


@pytest.fixture()
def flat_dataset(tmp_path) -> Path:
    """root/{circle,square,triangle}/*.jpg with no split folders (for validation_split)."""
    root = tmp_path / "flat"
    make_shapes_dataset(root, {"": 10}, shapes=("circle", "square", "triangle"), size=32)
    return root


def run_imgai(*args: str, cwd: Path, input: str | None = None, env: dict | None = None, timeout: int = 300):
    """Run the CLI in a subprocess, as a user would."""
    full_env = dict(os.environ)
    # The subprocess runs this checkout's sources, whatever copy of imgai is installed.
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "imgai", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
