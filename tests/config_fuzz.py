"""Hypothesis strategies for hostile configs, shared by tests/test_fuzz_config.py (a few hundred
examples in the quick subset) and scripts/fuzz_config.py (thousands, on demand).

A case is YAML text for a config file plus a list of ``key=value`` overrides. The text is either
a dumped mapping of known keys (with out-of-range, non-finite, wrongly typed, huge or
control-character values) or raw YAML-ish text (aliases, tags, flow collections, deep nesting).
:func:`check_case` runs one through the library and the CLI and returns what went wrong, if
anything: the only allowed outcomes are a valid config, or one ImgaiError line and exit 2.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import strategies as st

from imgai.cli import cli
from imgai.config import Config, _valid_paths, load_config
from imgai.errors import ImgaiError

KEYS = sorted(_valid_paths(Config))

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**32, 2**32 - 1, 10**9, 1e-300, 1e300, 0.5, 32, 8193]),
)
_leaf = st.one_of(st.none(), st.booleans(), _numbers, _text)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(_text, st.integers()), inner, max_size=3)
    ),
    max_leaves=12,
)
_key = st.one_of(st.sampled_from(KEYS), _text.filter(bool))


def _nest(pairs: list[tuple[str, object]]) -> dict:
    data: dict = {}
    for dotted, value in pairs:
        node, parts = data, dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return data


_mapping_text = st.lists(st.tuples(_key, _value), max_size=6).map(
    lambda pairs: yaml.safe_dump(_nest(pairs), allow_unicode=True)
)
_yamlish = st.text(alphabet="abdeinorstu0123456789.-_:[]{},&*!|>'\"#%@` \n\t?<=~+e", max_size=300)
_hostile = st.builds(
    lambda depth, width, kind: {
        "deep": "data:\n  root: " + "[" * depth + "]" * depth + "\n",
        "laughs": "_a: &a0 ["
        + ",".join(["x"] * width)
        + "]\n"
        + "".join(
            f"_a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]\n" for i in range(1, depth % 12 + 2)
        ),
        "laughs_root": "data:\n  root: &a0 ["
        + ",".join(["x"] * width)
        + "]\n  val_dir: ["
        + ", ".join(f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth % 10 + 2))
        + "]\n",
        "digits": f"seed: {'7' * (depth * 20)}\n",
        "tag": f"data: !!python/object/apply:os.system ['echo {width}']\n",
    }[kind],
    st.integers(1, 600),
    st.integers(1, 12),
    st.sampled_from(["deep", "laughs", "laughs_root", "digits", "tag"]),
)
_override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.one_of(_yamlish, _text)),
    st.builds(
        lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}",
        st.sampled_from(KEYS),
        _value,
    ),
    _text,
)

cases = st.tuples(st.one_of(_mapping_text, _yamlish, _hostile), st.lists(_override, max_size=3))

_DIR = Path(tempfile.mkdtemp(prefix="imgai-fuzz-"))
_runner = CliRunner()


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def check_case(text: str, overrides: list[str], use_cli: bool = True, limit_s: int = 5) -> str | None:
    """None if ``(text, overrides)`` gave a config or one clean error line, else what went wrong."""
    path = _DIR / "case.yaml"
    path.write_text(text, encoding="utf-8")
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        try:
            load_config([path], overrides)
        except ImgaiError as exc:
            if exc.exit_code != 2 or "\n" in exc.message or len(exc.message) > 2000:
                return f"bad error line: {exc.message[:300]!r}"
        except Hang:
            return "hang"
        except Exception as exc:  # anything else is a traceback for the user
            return f"traceback: {type(exc).__name__}: {str(exc)[:200]}"
        if use_cli:
            args = ["config", "check", str(path)] + [a for o in overrides for a in ("--set", o)]
            result = _runner.invoke(cli, args)
            if isinstance(result.exception, Hang):
                return "hang"
            if result.exit_code not in (0, 2) or (
                result.exception is not None and not isinstance(result.exception, SystemExit)
            ):
                return f"cli exit {result.exit_code}: {result.exception!r}"[:300]
            if "Traceback" in result.output:
                return "cli printed a traceback"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return None
