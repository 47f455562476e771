"""Run the bad-input corpus (tests/bad_inputs.py) through train, eval, predict and explain.

    python3 scripts/bad_input_corpus.py [--keep DIR]

train, eval and predict run as the CLI, each in its own process (peak memory from wait4);
explain runs in this process on every corpus file, one at a time, with a 60 s alarm per file.
Every case must end in a handled outcome: decoded, or skipped / refused with one line naming it,
no traceback, no hang. Prints one line per case; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from bad_inputs import BROKEN, make_corpus  # noqa: E402

TINY = [
    "model.filters=[8]",
    "model.dense_units=8",
    "data.image_size=32",
    "data.batch_size=4",
    "train.epochs=1",
]


def cli(args: list[str], cwd: Path, timeout: int = 900) -> tuple[int, str, float, float]:
    """(exit code, stdout+stderr, peak RSS in MB, seconds) of one imgai command."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgai", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return 124, out.decode("utf-8", "replace") + "\n[HANG]", 0.0, time.perf_counter() - started
    # communicate() reaped it; RUSAGE_CHILDREN's maxrss is the largest child so far.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return proc.returncode, out.decode("utf-8", "replace"), peak, time.perf_counter() - started


def _summary(rc: int, out: str, peak: float, seconds: float) -> dict:
    return {"rc": rc, "peak_mb": round(peak), "seconds": round(seconds, 1), "traceback": "Traceback" in out}


class Hang(Exception):
    pass


def run_corpus(work: Path) -> dict:
    corpus = work / "corpus"
    made = make_corpus(corpus)
    broken = set(BROKEN) | {"fifo", "dangling_link"}
    cases: dict[str, dict] = {}
    report = {"cases": cases, "commands": {}}

    rc, out, peak, secs = cli(
        ["train", f"data.root={corpus}", "train.monitor=loss", *TINY, "--name", "c"], work
    )
    report["commands"]["train"] = _summary(rc, out, peak, secs)
    skipped_txt = work / "runs" / "c" / "skipped.txt"
    skipped = skipped_txt.read_text(encoding="utf-8") if skipped_txt.is_file() else ""
    model = work / "runs" / "c" / "best.keras"

    report["commands"]["eval"] = _summary(
        *cli(["eval", "--model", str(model), "--data", str(corpus), "--output-dir", "ev"], work)
    )

    paths = [str(p) for p in made.values() if p.name != "loop"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "imgai", "predict", "--model", str(model), "--format", "jsonl", *paths],
        cwd=work,
        env=env,
        capture_output=True,
        timeout=900,
    )
    secs_p = time.perf_counter() - started
    peak_p = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        record = json.loads(line)
        rows[record["path"]] = record
    report["commands"]["predict"] = {
        "rc": proc.returncode,
        "peak_mb": round(peak_p),
        "seconds": round(secs_p, 1),
        "traceback": b"Traceback" in proc.stderr,
    }

    from imgai.errors import ImgaiError
    from imgai.explain import explain_file
    from imgai.modelfile import load_model
    from imgai.quiet import import_keras

    import_keras()
    loaded, info = load_model(model)

    def alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    for kind, path in made.items():
        entry = cases[kind] = {}
        if kind == "dir_link_loop":
            entry["train"] = "not followed" if "not followed" in skipped else "MISSING"
            entry["ok"] = entry["train"] == "not followed" and rc == 0
            continue
        from imgai.text import printable

        listed = printable(str(path)) in skipped
        entry["train"] = "skipped" if listed else "decoded"
        row = rows.get(str(path), {})
        entry["predict"] = "error: " + row["error"] if "error" in row else "predicted" if row else "MISSING"
        signal.alarm(60)
        try:
            explain_file(loaded, info, path, work / f"explain_{kind}.png")
            entry["explain"] = "explained"
        except ImgaiError as exc:
            entry["explain"] = "error: " + exc.message
        except Hang:
            entry["explain"] = "HANG"
        except Exception as exc:  # a crash: what the corpus is here to catch
            entry["explain"] = f"CRASH {type(exc).__name__}: {exc}"[:200]
        finally:
            signal.alarm(0)
        if kind == "directory_named_png":  # a folder: walked into (it holds nothing), refused by name
            refused = entry["predict"].startswith("error: ") and entry["explain"].startswith("error: ")
            entry["ok"] = not listed and refused
        elif kind in broken:
            entry["ok"] = (
                listed
                and entry["predict"].startswith("error: ")
                and entry["explain"].startswith("error: ")
                and "\n" not in entry["explain"]
            )
        else:
            entry["ok"] = not listed and entry["predict"] == "predicted" and entry["explain"] == "explained"
    report["peak_mb_explain_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["train_ok"] = rc == 0 and report["commands"]["eval"]["rc"] in (0, 1)
    report["predict_ok"] = proc.returncode == 1 and not report["commands"]["predict"]["traceback"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="imgai-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    report = run_corpus(work)
    for kind, entry in report["cases"].items():
        flag = "ok  " if entry["ok"] else "FAIL"
        predict, explain = entry.get("predict", "-")[:60], entry.get("explain", "-")[:70]
        print(f"{flag} {kind:22} train {entry['train']:9} predict {predict:60} explain {explain}")
    for name, command in report["commands"].items():
        print(f"{name}: exit {command['rc']}, {command['seconds']} s, peak {command['peak_mb']} MB")
    handled = sum(e["ok"] for e in report["cases"].values())
    hangs = sum("HANG" in json.dumps(e) for e in report["cases"].values())
    summary = {
        "cases": len(report["cases"]),
        "handled": handled,
        "hangs": hangs,
        "tracebacks": sum(c["traceback"] for c in report["commands"].values()),
        "commands_ok": bool(report["train_ok"] and report["predict_ok"]),
        "peak_mb": max(
            [c["peak_mb"] for c in report["commands"].values()] + [report["peak_mb_explain_process"]]
        ),
        "peak_mb_explain_process": report["peak_mb_explain_process"],
    }
    print(json.dumps(summary))
    return (
        0 if handled == len(report["cases"]) and summary["commands_ok"] and not summary["tracebacks"] else 1
    )


if __name__ == "__main__":
    sys.exit(main())
