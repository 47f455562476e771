"""Hostile YAML: each kind is refused in well under a second with one short line, through the
config loader (files and overrides) and the CLI."""

import os
import time

import pytest

from conftest import run_imgai
from imgai import boundedyaml
from imgai.config import load_config
from imgai.errors import ImgaiError


def laughs(levels: int = 10, width: int = 9) -> str:
    """The billion-laughs file: anchor i repeats anchor i-1 `width` times, used as data.root."""
    text = "_a: &a0 [" + ", ".join(["lol"] * width) + "]\n"
    for i in range(1, levels):
        text += f"_a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n"
    return text + f"data:\n  root: *a{levels - 1}\n"


HOSTILE = {
    "billion laughs": (laughs(), "expands to more than"),
    "500 deep": ("data:\n  root: " + "[" * 500 + "]" * 500 + "\n", "nests deeper than 32 levels"),
    "5000-digit int": ("seed: " + "9" * 5000 + "\n", "integer of 5,000 digits"),
    "huge string": ("data:\n  root: " + "a" * 20_000 + "\n", "value of 20,000 characters"),
    "self alias": ("data:\n  root: &r [*r]\n", "alias that contains itself"),
    "deep mapping": ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)), "nests deeper"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_one_line_fast(name, tmp_path):
    text, expected = HOSTILE[name]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ImgaiError, match=expected) as info:
        load_config([path])
    assert time.perf_counter() - started < 1.0
    message = info.value.message
    assert "\n" not in message and len(message) < 300 and info.value.exit_code == 2


@pytest.mark.parametrize(
    "override,expected",
    [
        ("seed=" + "1" * 5000, "integer of 5,000 digits"),
        ("data.image_size=" + "[" * 100 + "]" * 100, "nests deeper"),
        ("data.image_size=[&a [1,1,1,1,1,1,1,1,1,1], " + "*a, " * 3 + "*a]", None),  # small aliases are fine
        ("data.root=" + "a" * 20_000, "value of 20,000 characters"),  # text settings are not YAML
    ],
)
def test_overrides_are_bounded_too(override, expected):
    if expected is None:
        with pytest.raises(ImgaiError, match="invalid config value data.image_size"):
            load_config([], [override])
        return
    with pytest.raises(ImgaiError, match=expected):
        load_config([], [override])


def test_aliases_and_merge_keys_within_the_budget_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: &t {epochs: 2, learning_rate: 0.01}\n")
    assert load_config([path]).train.epochs == 2
    assert boundedyaml.load("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n")["use"] == {"x": 1, "y": 2}


def test_validation_errors_never_print_a_huge_or_raw_value(tmp_path):
    path = tmp_path / "c.yaml"
    # 9**4 values: inside the budget, so it reaches validation, whose message must stay short.
    value = "&a0 [" + ", ".join(["lol"] * 9) + "]"
    for i in range(1, 4):
        value = f"&a{i} [{value}" + f", *a{i - 1}" * 8 + "]"
    path.write_text(f"data:\n  root: {value}\n")
    with pytest.raises(ImgaiError, match="invalid config value data.root=") as info:
        load_config([path])
    assert len(info.value.message) < 300
    with pytest.raises(ImgaiError) as info:
        load_config([], ["train.class_weight=\x1b[31mred\x07"])  # reaches no terminal raw
    assert "\x1b" not in info.value.message and "\x07" not in info.value.message
    path.write_text('data:\n  "ro\\x1b[2Jot": 1\n')
    with pytest.raises(ImgaiError, match="unknown config key") as info:
        load_config([path])
    assert "\x1b" not in info.value.message


def test_non_finite_and_out_of_range_settings_are_config_errors():
    for override, expected in [
        ("train.learning_rate=.inf", "train.learning_rate=inf: Input should be a finite number"),
        ("augment.mixup=.nan", "augment.mixup=nan"),
        ("train.warmup_epochs=.inf", "train.warmup_epochs=inf"),
        ("train.class_weight={a: .nan}", "train.class_weight.a=nan: Input should be a finite number"),
        ("seed=-1", "seed=-1"),
        ("seed=4294967296", "less than or equal to 4294967295"),
        ("augment.randaugment=1000", "augment.randaugment=1000"),
        ("model.dense_units=1000000000", "model.dense_units"),
        ("data.image_size=100000", "at most 8192 pixels"),
    ]:
        with pytest.raises(ImgaiError, match=expected.replace(".", r"\.").replace("[", r"\[")):
            load_config([], [override])
    assert load_config([], ["seed=4294967295"]).seed == 2**32 - 1


def test_cli_config_check_on_hostile_files_and_a_fifo(tmp_path):
    (tmp_path / "laughs.yaml").write_text(laughs())
    os.mkfifo(tmp_path / "fifo.yaml")
    for name, expected in [("laughs.yaml", "expands to more than"), ("fifo.yaml", "not a regular file")]:
        result = run_imgai("config", "check", name, cwd=tmp_path, timeout=30)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
