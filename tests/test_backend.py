"""imgai trains, evaluates and predicts on the JAX backend in a Python where TensorFlow cannot load."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# An import hook that makes every ``import tensorflow`` fail, as in a Python without TensorFlow
# installed, and checks at exit that nothing managed to import it.
BLOCK_TENSORFLOW = """
import atexit, importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"No module named '{name}' (blocked by the test)")
        return None

sys.meta_path.insert(0, NoTensorFlow())

def check():
    if "tensorflow" in sys.modules:
        sys.stderr.write("TENSORFLOW WAS IMPORTED\\n")
        sys.stdout.flush()
        import os
        os._exit(3)

atexit.register(check)
"""
# The CLI, with TensorFlow blocked.
NO_TENSORFLOW = (
    BLOCK_TENSORFLOW
    + """
from imgai.cli import main
sys.argv[0] = "imgai"
main()
"""
)
HAS_JAX = importlib.util.find_spec("jax") is not None


def run_without_tensorflow(code: str, *args: str, cwd, timeout: int = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python on the JAX backend (CPU) with TensorFlow blocked; must succeed."""
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="needs jax (pip install -e '.[test]')")
def test_train_eval_predict_on_jax_without_tensorflow(split_dataset, tmp_path):
    def imgai(*args):
        return run_without_tensorflow(NO_TENSORFLOW, *args, cwd=tmp_path)

    for cache_mode in ("disk", "none"):
        imgai(
            "train",
            f"data.root={split_dataset}",
            "data.image_size=32",
            "train.epochs=1",
            "data.batch_size=8",
            "model.filters=[4]",
            "model.dense_units=8",
            f"data.cache={cache_mode}",
            f"data.cache_dir={tmp_path / 'cache'}",
        )
    imgai("eval")
    metrics = json.loads((tmp_path / "runs" / "run2" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["num_images"] == 12
    image = next((split_dataset / "test" / "circle").iterdir())
    out = imgai("predict", str(image), "--format", "json")
    assert len(json.loads(out.stdout)[0]["predictions"]) == 3
