"""Names and messages: control characters never split a line or reach the terminal raw, skip
reasons are readable, and the wrong messages the issue list named say the right thing."""

import numpy as np
import pytest

from conftest import run_imgai
from imgai.data import decode_image, describe_decode_error, resolve_splits, scan_folder, write_skipped
from imgai.errors import ImgaiError
from imgai.predict import PredictionRow, format_rows
from imgai.text import printable, printable_lines, short_repr


def test_printable_escapes_only_control_characters():
    assert printable("tulips é 花") == "tulips é 花"
    assert printable("a\nb\x1b[31mc\td") == "a\\nb\\x1b[31mc\\td"
    assert printable_lines("one\ttwo\x07\nthree") == "one\ttwo\\x07\nthree"
    assert len(short_repr(list(range(10**6)))) < 130 and short_repr(10**5000) == "<int>"


@pytest.mark.parametrize("bad", ["two\nlines", "red\x1b[31m", "tab\there"])
def test_class_folder_with_a_control_character_is_refused(tmp_path, bad):
    for name in ("ok", bad):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(b"x")
    with pytest.raises(ImgaiError, match="has a control character") as info:
        scan_folder(tmp_path)
    assert "\n" not in info.value.message and "\x1b" not in info.value.message


def test_skipped_list_and_predict_table_keep_one_row_per_file(tmp_path):
    path = tmp_path / "skipped.txt"
    write_skipped(path, [("dir/a\nb.png", "truncated\nfile"), ("c.png", "bad")])
    assert path.read_text().splitlines() == ["dir/a\\nb.png\ttruncated\\nfile", "c.png\tbad"]
    rows = [
        PredictionRow("x\ny.png", probabilities=np.array([0.9, 0.1])),
        PredictionRow("e\x1b[2J.png", error="cannot read"),
    ]
    table = format_rows(rows, ["cat\x1b[31m", "dog"], 2)
    assert table.splitlines() == [
        "x\\ny.png: cat\\x1b[31m 90.0%, dog 10.0%",
        "e\\x1b[2J.png: ERROR cannot read",
    ]


def test_skip_reason_names_no_python_object(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"this is no image")
    with pytest.raises(Exception) as info:
        decode_image(path, (32, 32))
    reason = describe_decode_error(info.value)
    assert "object at 0x" not in reason and "BytesIO" not in reason
    assert reason == "not an image file Pillow can read (unknown or damaged format)"


def test_data_root_that_is_a_file_says_so(tmp_path):
    from imgai.config import load_config

    (tmp_path / "f").write_text("x")
    config = load_config([], [f"data.root={tmp_path / 'f'}"])
    with pytest.raises(ImgaiError, match="is not a folder"):
        resolve_splits(config.data, 1)


def test_cli_data_sample_into_a_file_and_escaped_errors(tmp_path):
    (tmp_path / "hostname").write_text("x")
    result = run_imgai("data", "sample", "hostname", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr, result.stderr
    weird = run_imgai("config", "check", "no\x1b[2Jfile.yaml", cwd=tmp_path, timeout=60)
    assert weird.returncode == 2 and "\x1b" not in weird.stderr and "\\x1b[2J" in weird.stderr
