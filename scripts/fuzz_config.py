"""Fuzz the config loader and `imgai config check` with thousands of hostile cases.

    python3 scripts/fuzz_config.py -n 5000 [--seed 1] [--no-cli]

Each case (tests/config_fuzz.py) is a YAML file plus overrides; allowed outcomes are a valid
config or one ImgaiError line with exit 2. A case running past 5 s counts as a hang. Prints the
totals and the first problems; the last line is one JSON object. Exit 1 if any case failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "src"),
    str(Path(__file__).resolve().parents[1] / "tests"),
]

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

from config_fuzz import cases, check_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="number of cases")
    parser.add_argument("--seed", type=int, default=random.randrange(2**31))
    parser.add_argument("--no-cli", action="store_true", help="library only (faster)")
    parser.add_argument("--limit", type=int, default=5, help="seconds after which a case is a hang")
    args = parser.parse_args()

    outcomes: Counter = Counter()
    problems: list[tuple[str, str, list]] = []
    slowest = 0.0

    @hypothesis_seed(args.seed)
    @settings(max_examples=args.n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(cases)
    def run(case):
        nonlocal slowest
        text, overrides = case
        started = time.perf_counter()
        problem = check_case(text, overrides, use_cli=not args.no_cli, limit_s=args.limit)
        slowest = max(slowest, time.perf_counter() - started)
        if problem is None:
            outcomes["ok"] += 1
        else:
            kind = problem.split(":")[0]
            outcomes[kind] += 1
            if len(problems) < 10:
                problems.append((problem, text[:200], overrides))

    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    total = sum(outcomes.values())
    for problem, text, overrides in problems:
        print(f"PROBLEM {problem}\n  text: {text!r}\n  overrides: {overrides!r}")
    print(f"{total} cases in {seconds:.1f} s: {outcomes['ok']} handled, {total - outcomes['ok']} problems")
    summary = {
        "cases": total,
        "handled": outcomes["ok"],
        "tracebacks": outcomes["traceback"] + outcomes["cli exit 1"],
        "hangs": outcomes["hang"],
        "bad_error_lines": outcomes["bad error line"],
        "other_problems": total
        - outcomes["ok"]
        - outcomes["traceback"]
        - outcomes["hang"]
        - outcomes["bad error line"],
        "slowest_case_s": round(slowest, 3),
        "seconds": round(seconds, 1),
        "seed": args.seed,
        "cli": not args.no_cli,
    }
    print(json.dumps(summary))
    return 0 if outcomes["ok"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
