"""Framework noise kept off the screen, and a missing Keras backend as one line naming its extra."""

import importlib.util
import os

import pytest

from conftest import run_imgai


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="needs a Python without torch")
def test_missing_backend_is_one_line_naming_the_extra(split_dataset, tmp_path):
    env = dict(os.environ, KERAS_BACKEND="torch")
    result = run_imgai("data", "preview", f"data.root={split_dataset}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: the Keras backend 'torch' is not installed: pip install 'imgai[torch]', "
        "or set KERAS_BACKEND to an installed one (tensorflow, jax, torch)"
    )
