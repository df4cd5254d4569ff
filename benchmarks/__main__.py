"""``python -m benchmarks [--quick] [--instructions] [--output DIR] [--cases 1,i1,...]``: see
``benchmarks``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._cases import CASES
from ._harness import Row, Settings, environment, git_state, pyot_missing, pyot_module
from ._instructions import (
    INSTRUCTION_CASES,
    InstructionsUnavailable,
    repeatability,
    valgrind,
    valgrind_version,
)
from ._report import markdown, write

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
ALL_CASES = {**CASES, **INSTRUCTION_CASES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="resourceloop vs Pyot (pyot.core.resources) vs the floor, side by side.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="every case at small counts (under a minute)"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions with callgrind (cases "
        + ", ".join(INSTRUCTION_CASES)
        + "; needs valgrind)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write results.md/.json and churn.png (default: {DEFAULT_OUTPUT}; "
        "with --quick, a temporary directory so the committed results stay as they are)",
    )
    parser.add_argument(
        "--cases",
        default=None,
        help="comma-separated cases: wall time "
        + ",".join(CASES)
        + ", instructions "
        + ",".join(INSTRUCTION_CASES)
        + " (default: the wall-time cases, and with --instructions the others too)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="callgrind children run side by side (default 2; counts do not depend on load)",
    )
    parser.add_argument(
        "--callgrind-dir",
        type=Path,
        default=None,
        help="keep every callgrind file there (one directory per run of a workload), "
        "for callgrind_annotate",
    )
    parser.add_argument(
        "--require-clean",
        action="store_true",
        help="refuse to run when the code differs from the commit it would name in results.md",
    )
    args = parser.parse_args(argv)
    settings = Settings.quick_() if args.quick else Settings.full()
    if args.jobs is not None:
        settings = dataclasses.replace(settings, cg_jobs=max(1, args.jobs))
    if args.callgrind_dir is not None:
        settings = dataclasses.replace(settings, cg_keep=args.callgrind_dir.resolve())
    if args.cases is None:
        # The celery and django cases start servers and worker processes: only when named.
        chosen = [c for c in CASES if c not in ("celery", "celery_soak", "django")]
        chosen += list(INSTRUCTION_CASES) if args.instructions else []
    else:
        chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in ALL_CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(ALL_CASES)}")
    counting = [c for c in chosen if c in INSTRUCTION_CASES]
    if counting:
        try:
            valgrind()
        except InstructionsUnavailable as exc:
            parser.error(str(exc))
    commit, changed = git_state()
    if args.require_clean and changed:
        parser.error(
            f"--require-clean: {len(changed)} file(s) differ from commit {commit[:12]} "
            f"({', '.join(changed[:5])}); commit or stash them first"
        )
    out = args.output
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="resourceloop-bench-")) if args.quick else DEFAULT_OUTPUT

    env = environment()
    if counting:
        env["valgrind"] = valgrind_version()
    pyot_state = "available" if pyot_module() is not None else pyot_missing()
    print(f"resourceloop {env['resourceloop']} | Pyot: {pyot_state} | {env['python']}", flush=True)
    if changed:
        print(f"note: uncommitted changes to {', '.join(changed)}", flush=True)
    rows: list[Row] = []
    data: dict[str, Any] = {}
    started = time.perf_counter()
    for case in chosen:
        case_start = time.perf_counter()
        print(f"case {case} ({ALL_CASES[case].__name__}) ...", end=" ", flush=True)
        rows += ALL_CASES[case](settings, data)
        print(f"{time.perf_counter() - case_start:.1f} s", flush=True)
    summary = repeatability(data)
    if summary is not None:
        rows.append(summary)
    env["seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(markdown(rows, env, settings.quick))
    for line in write(rows, data, env, out, settings.quick):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
