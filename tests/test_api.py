"""The public Python API: light to import, the README's notebook session run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import imgai
from imgai.errors import ImgaiError

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_import_is_light_and_names_are_the_functions():
    code = (
        "import sys, imgai; import imgai.train, imgai.evaluate, imgai.predict, imgai.explain\n"
        "from imgai import train, evaluate, predict, explain, load_model, load_config\n"
        "assert all(callable(f) and f.__module__ == 'imgai.api' "
        "for f in (train, evaluate, predict, explain, load_model, load_config))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # even with the pipeline modules imported: no framework yet


def test_load_config_takes_sections_dotted_overrides_and_files(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("train:\n  epochs: 5\n  learning_rate: 0.01\n")
    config = imgai.load_config(path, ["train.epochs=7"], train={"epochs": 3}, data={"image_size": 64})
    assert config.train.epochs == 7 and config.train.learning_rate == 0.01  # dotted last, then sections
    assert config.data.image_size == (64, 64)
    assert imgai.load_config(config, train={"epochs": 2}).train.epochs == 2
    with pytest.raises(ImgaiError, match="did you mean train.epochs"):
        imgai.load_config(train={"epoch": 3})


def test_library_errors_name_parameters_not_flags(tmp_path):
    with pytest.raises(ImgaiError) as err:
        imgai.evaluate(tmp_path / "none.keras")
    assert "`model_path`" in err.value.message and "--model" not in err.value.message
    assert "--model" in err.value.worded({"model_path": "--model"})
    (tmp_path / "best.keras").write_bytes(b"")  # found; the gate is checked before it is loaded
    with pytest.raises(ImgaiError) as err:
        imgai.evaluate(tmp_path, fail_under={"loss": 0.5})
    assert "`eval.fail_over` loss=VALUE" in err.value.message and "--fail-over" not in err.value.message


@pytest.mark.slow
def test_readme_notebook_session_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    result, report, why = namespace["result"], namespace["report"], namespace["why"]
    assert isinstance(result, imgai.TrainResult) and result.best_model.is_file()
    assert result.run_dir == Path("runs") / "notebook"
    assert len(namespace["seen"]) == 2  # the callback saw both epochs
    assert isinstance(report, imgai.EvalResult) and report.passed is True and 0 <= report.accuracy <= 1
    assert (report.report_dir / "metrics.json").is_file()
    assert isinstance(why, imgai.ExplainResult) and Path("why.png").is_file()
    out = capsys.readouterr().out
    assert "circle_0000.png" in out and "gate passed: True" in out
