"""``python -m benchmarks [--quick] [--output DIR] [--cases 1,2,...]``: see ``benchmarks``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._cases import CASES
from ._harness import Row, Settings, environment, pyot_missing, pyot_module
from ._report import markdown, write

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="resourceloop vs Pyot (pyot.core.resources) vs the floor, side by side.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="every case at small counts (under a minute)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write results.md/.json and churn.png (default: {DEFAULT_OUTPUT}; "
        "with --quick, a temporary directory so the committed results stay as they are)",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated case numbers (default: all)"
    )
    args = parser.parse_args(argv)
    settings = Settings.quick_() if args.quick else Settings.full()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    out = args.output
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="resourceloop-bench-")) if args.quick else DEFAULT_OUTPUT

    env = environment()
    pyot_state = "available" if pyot_module() is not None else pyot_missing()
    print(f"resourceloop {env['resourceloop']} | Pyot: {pyot_state} | {env['python']}", flush=True)
    rows: list[Row] = []
    data: dict[str, Any] = {}
    started = time.perf_counter()
    for case in chosen:
        case_start = time.perf_counter()
        print(f"case {case} ({CASES[case].__name__}) ...", end=" ", flush=True)
        rows += CASES[case](settings, data)
        print(f"{time.perf_counter() - case_start:.1f} s", flush=True)
    env["seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(markdown(rows, env, settings.quick))
    for line in write(rows, data, env, out, settings.quick):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
