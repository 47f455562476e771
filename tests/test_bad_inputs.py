"""The bad-input corpus (tests/bad_inputs.py) through train, eval, predict and explain: every
broken kind is skipped or refused with one line, every odd-but-valid kind is decoded, no command
prints a traceback or hangs (scripts/bad_input_corpus.py runs the same and prints peak memory)."""

import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_bad_input_corpus_is_handled_everywhere(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from bad_input_corpus import run_corpus
    finally:
        sys.path.remove(str(REPO / "scripts"))
    report = run_corpus(tmp_path)
    failed = {kind: entry for kind, entry in report["cases"].items() if not entry["ok"]}
    assert not failed, failed
    assert report["train_ok"] and report["predict_ok"], report["commands"]
    assert not any(command["traceback"] for command in report["commands"].values())
    # bounded work: no command near the 17.5 GB a 114-byte strip once cost
    assert max(command["peak_mb"] for command in report["commands"].values()) < 4000
