"""Instruction counts with callgrind: the per-loop and hit cases, in figures a busy machine
cannot move.

Each measurement is a child process, ``valgrind --tool=callgrind ... python -m
benchmarks._callgrind_child WORKLOAD IMPL N WARMUP``; the child marks where the counted work
starts and ends, and callgrind writes one file per part (see ``_callgrind_child``). Start-up,
imports, set-up and warm-up fall outside the counted part, so the figure is instructions per
loop lifetime, or per hit, of the work alone. Every thread of the child is counted. The
reaper's periodic pass is kept out (``RESOURCELOOP_REAP_INTERVAL=3600`` in the child): it comes
once a second of *time*, not once per loop, and under callgrind a second holds fifty times
less work, so it would add a random few hundredths of a percent that the native program does
not pay per loop. ``PYTHONHASHSEED=0`` and a ``gc.collect()`` plus ``gc.freeze()`` before the
counted part keep runs alike (see ``_callgrind_child``); each measurement runs ``rounds``
times and the rows report the spread.

Cases form a registry, ``INSTRUCTION_CASES`` (``i1``...), next to the wall-time ``CASES``; a
case is a function ``(settings, data) -> rows`` like those, built on ``count``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._callgrind_child import (
    ATEXIT,
    BARE,
    LIMIT_EXIT,
    LIMIT_HOOK,
    LOOP_LOCAL,
    MANAGED_PHASES,
    PHASES,
    RUNVAR,
    SIGINT_STATES,
)
from ._harness import FLOOR, PYOT, RL, Row, Settings, pyot_missing, pyot_module

__all__ = ["INSTRUCTION_CASES", "InstructionsUnavailable", "count", "repeatability", "valgrind"]

Data = dict[str, Any]

_ROOT = Path(__file__).resolve().parent.parent
_MARKER = "getppid"  # the libc function the child calls at each boundary


class InstructionsUnavailable(RuntimeError):
    """valgrind is missing or does not work here; the message says how to get it."""


def valgrind() -> str:
    """The path of a working valgrind with callgrind, or raise ``InstructionsUnavailable``."""
    path = shutil.which("valgrind")
    if path is None:
        raise InstructionsUnavailable(
            "valgrind is not installed: instruction counts need callgrind "
            "(`apt-get install -y valgrind` on Debian or Ubuntu; `nox -s bench` does it as root)"
        )
    return path


def valgrind_version() -> str:
    try:
        out = subprocess.run(
            [valgrind(), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (InstructionsUnavailable, OSError, subprocess.SubprocessError):
        return "not installed"
    return out.stdout.strip() or "unknown"


def _summary(path: Path) -> int:
    """The total instruction count of one callgrind dump."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no summary line in callgrind output {path}")


def _run_child(
    workload: str,
    impl: str,
    n: int,
    warmup: int,
    keep: Path | None = None,
    *,
    sigint: str = "default",
) -> dict[str, int]:
    """Instructions per label, summed over the parts the child labelled so.

    ``sigint`` is the SIGINT handler the child's ``asyncio.run`` finds (``SIGINT_STATES``).

    With ``keep``, the callgrind files are copied there (with ``labels.json``), for
    ``callgrind_annotate --inclusive=yes`` to show which functions the instructions went to.
    """
    with tempfile.TemporaryDirectory(prefix="resourceloop-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONHASHSEED"] = "0"
        env.pop("PYTHONMALLOC", None)
        for name in [n for n in env if n.startswith("RESOURCELOOP_")]:
            del env[name]
        # The reaper's pass comes once per interval of *time*, and callgrind runs the program
        # about fifty times slower: left at 1 s, passes would land in the counted part at
        # random, fifty times as often as they would natively. An hour keeps them out.
        env["RESOURCELOOP_REAP_INTERVAL"] = "3600"
        cmd = [
            valgrind(),
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            f"--dump-before={_MARKER}",
            "--dump-instr=no",
            "--dump-line=no",
            sys.executable,
            "-m",
            "benchmarks._callgrind_child",
            workload,
            impl,
            str(n),
            str(warmup),
            sigint,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=_ROOT, timeout=1800, check=False
        )
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise RuntimeError(f"{workload}/{impl} under callgrind failed:\n{tail}")
        labels: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])["labels"]
        dumps = sorted(
            (p for p in Path(tmp).glob("callgrind.out.*") if p.suffix[1:].isdigit()),
            key=lambda p: int(p.suffix[1:]),
        )
        if len(dumps) != len(labels):
            raise RuntimeError(
                f"{workload}/{impl}: {len(dumps)} callgrind dumps for {len(labels)} boundaries; "
                f"something else called {_MARKER}()"
            )
        totals: dict[str, int] = {}
        for label, dump in zip(labels, dumps, strict=True):
            totals[label] = totals.get(label, 0) + _summary(dump)
        if keep is not None:
            (out.parent / "labels.json").write_text(json.dumps(labels) + "\n")
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        return totals


@dataclasses.dataclass
class Count:
    """One measurement, repeated: instructions per operation for each label, each round."""

    workload: str
    impl: str
    n: int
    rounds: list[dict[str, float]]

    def per_op(self, label: str = "op") -> float:
        values = [r[label] for r in self.rounds]
        return sum(values) / len(values)

    def spread(self, label: str = "op") -> float:
        """Largest relative difference between two rounds (0 with one round)."""
        values = [r[label] for r in self.rounds]
        mean = sum(values) / len(values)
        return (max(values) - min(values)) / mean if mean else 0.0

    def describe(self, label: str = "op") -> str:
        runs = " and ".join(f"{r[label]:,.0f}" for r in self.rounds)
        if len(self.rounds) == 1:
            return f"1 run: {runs} (repeatability not checked)"
        return f"{len(self.rounds)} runs: {runs} (spread {self.spread(label) * 100:.3f}%)"


def count(
    jobs: Sequence[tuple[str, str, int, int]],
    rounds: int,
    parallel: int,
    keep: Path | None = None,
    sigint: str = "default",
) -> dict[tuple[str, str], Count]:
    """Run every ``(workload, impl, n, warmup)`` ``rounds`` times, ``parallel`` at a time.

    Instruction counts do not depend on the load, so children may run side by side. With
    ``keep``, each run's callgrind files go to ``keep/WORKLOAD-IMPL-runK/`` (with
    ``-sigint-ignored`` before ``-runK`` when ``sigint`` is not the default).
    """
    runs = [(index, job) for index in range(rounds) for job in jobs]

    def run(item: tuple[int, tuple[str, str, int, int]]) -> dict[str, int]:
        index, (workload, impl, n, warmup) = item
        where = None
        if keep is not None:
            state = "" if sigint == "default" else f"-sigint-{sigint}"
            name = f"{workload}-{impl.replace(' ', '_').replace(':', '')}{state}-run{index + 1}"
            where = keep / name
        return _run_child(workload, impl, n, warmup, where, sigint=sigint)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(run, runs))
    counts: dict[tuple[str, str], Count] = {}
    for (_, (workload, impl, n, _)), totals in zip(runs, results, strict=True):
        entry = counts.setdefault((workload, impl), Count(workload, impl, n, []))
        entry.rounds.append({label: total / n for label, total in totals.items()})
    return counts


def _pyot_impls() -> list[str]:
    return [PYOT] if pyot_module() is not None else []


def _record(
    data: Data, counts: dict[tuple[str, str], Count], label: str = "op", tag: str = ""
) -> None:
    """Keep the counts in ``results.json`` and their spreads for I0; ``tag`` follows each name
    (the SIGINT state of issue #21's runs)."""
    spreads: list[tuple[str, str, str, float]] = data.setdefault("instruction_spreads", [])
    for (workload, impl), entry in counts.items():
        if len(entry.rounds) > 1:
            spreads.append((impl, f"{workload}/{impl}{tag}", label, entry.spread(label)))
    stored: dict[str, Any] = data.setdefault("instructions", {})
    for (workload, impl), entry in counts.items():
        stored[f"{workload}/{impl}{tag}"] = {"n": entry.n, "per_op_rounds": entry.rounds}


def _comparison(
    settings: Settings,
    data: Data,
    *,
    workload: str,
    n: int,
    warmup: int,
    case: str,
    metric: str,
    target: float,
    issue: str,
    extra: Sequence[str] = (),
    pyot_note: str = "",
) -> tuple[Row, dict[tuple[str, str], Count]]:
    impls = [RL, FLOOR, *_pyot_impls(), *extra]
    counts = count(
        [(workload, impl, n, warmup) for impl in impls],
        settings.cg_rounds,
        settings.cg_jobs,
        settings.cg_keep,
    )
    _record(data, counts)
    values: dict[str, Any] = {impl: counts[workload, impl].per_op() for impl in (RL, FLOOR)}
    values[PYOT] = counts[workload, PYOT].per_op() if _pyot_impls() else pyot_missing()
    ratio = values[RL] / values[FLOOR]
    notes = [f"resourceloop {counts[workload, RL].describe()}"]
    notes.append(f"floor {counts[workload, FLOOR].describe()}")
    if pyot_note and _pyot_impls():
        notes.append(pyot_note)
    row = Row(
        case,
        metric,
        "instr",
        values,
        target=f"<= {target:.2f}x floor ({issue})",
        holds=ratio <= target,
        note=f"N={n}; " + "; ".join(notes),
        kind="instructions",
    )
    return row, counts


def case_run3(settings: Settings, data: Data) -> list[Row]:
    """``asyncio.run`` acquiring 3 templates, no manager, against 3 hand-written dicts."""
    row, counts = _comparison(
        settings,
        data,
        workload="run3",
        n=settings.cg_loops,
        warmup=settings.cg_warmup_loops,
        case="I1. asyncio.run, 3 templates",
        metric="instructions per `asyncio.run` lifetime, no manager",
        target=1.5,
        issue="#11",
        extra=[BARE],
        pyot_note="Pyot releases by hand before the loop closes (its purge would deadlock)",
    )
    bare = counts["run3", BARE].per_op()
    row.note += f"; a bare `asyncio.run` of an empty coroutine: {bare:,.0f}"
    return [row]


def case_managed(settings: Settings, data: Data) -> list[Row]:
    """``asyncio.run``: enter the manager, acquire 1 template, exit; against a dict."""
    row, _ = _comparison(
        settings,
        data,
        workload="managed",
        n=settings.cg_loops,
        warmup=settings.cg_warmup_loops,
        case="I2. managed cycle, 1 template",
        metric="instructions per `asyncio.run`: enter manager, acquire, exit",
        target=1.25,
        issue="#11",
    )
    if row.holds is False:
        row.why = WHY_MANAGED_INSTRUCTIONS
    return [row]


#: Where a managed cycle's instructions go beyond the floor (3.13, callgrind marks between the
#: steps, 2026-12-02), for when I2 misses its target.
WHY_MANAGED_INSTRUCTIONS = (
    "on 3.13 a managed cycle does about 130k instructions more than the floor's 393k: "
    "tracking the new loop about 50k (its state, the weak reference with its callback, the "
    "store and its hot dict on the loop, the close wrapper), creating the resource 18k "
    "(the floor: 4k), leaving the manager about 30k (taking the batch under the lock, the "
    "release with its timing, settling, unmarking the loop) and untracking at `loop.close()` "
    "about 20k. The same work weighs more on 3.13 because its floor is 160k instructions "
    "cheaper than 3.11's (there I2 holds)"
)


def case_hit(settings: Settings, data: Data) -> list[Row]:
    """``await t.acquire()`` on a loop that holds the resource; against an awaited dict get."""
    row, _ = _comparison(
        settings,
        data,
        workload="hit",
        n=settings.cg_hits,
        warmup=settings.cg_warmup_hits,
        case="I3. hit",
        metric="instructions per `await t.acquire()`, resource held",
        target=1.10,
        issue="#11",
    )
    return [row]


def case_phases(settings: Settings, data: Data) -> list[Row]:
    """Where I1's instructions go: each phase of one lifetime, resourceloop against the floor.

    Also with 1 template instead of 3, which splits ``loop.close()`` into a part per template
    (the releases) and a fixed part (the close hook's own loop run, untracking).
    """
    n, warmup = settings.cg_phase_loops, settings.cg_warmup_loops
    jobs = [
        ("phases", RL, n, warmup),
        ("phases", FLOOR, n, warmup),
        ("phases", BARE, n, warmup),
        ("phases1", RL, n, warmup),
    ]
    counts = count(jobs, settings.cg_rounds, settings.cg_jobs, settings.cg_keep)
    for label in PHASES:
        _record(data, {("phases", RL): counts["phases", RL]}, label)
    rl, floor, bare = counts["phases", RL], counts["phases", FLOOR], counts["phases", BARE]
    one = counts["phases1", RL]
    rows: list[Row] = []
    for label in PHASES:
        values: dict[str, Any] = {
            RL: rl.per_op(label),
            FLOOR: floor.per_op(label),
            BARE: bare.per_op(label),
        }
        rows.append(
            Row(
                "I4. phases of I1",
                label,
                "instr",
                values,
                kind="phases",
                note=rl.describe(label) if label == "loop.close()" else "",
            )
        )
    total: dict[str, Any] = {
        name: sum(entry.per_op(label) for label in PHASES)
        for name, entry in ((RL, rl), (FLOOR, floor), (BARE, bare))
    }
    rows.append(Row("I4. phases of I1", "whole lifetime", "instr", total, kind="phases"))
    close3, close1 = rl.per_op("loop.close()"), one.per_op("loop.close()")
    per_template = (close3 - close1) / 2
    first = rl.per_op("1st acquisition")
    later = rl.per_op("2nd and 3rd acquisitions") / 2
    floor_close = floor.per_op("loop.close()")
    derived = [
        ("`loop.close()`: per template released (3 vs 1 template)", per_template),
        (
            "`loop.close()`: fixed part beyond the floor's close (hook, untracking)",
            close1 - per_template - floor_close,
        ),
        ("1st acquisition beyond a later one (tracking the loop)", first - later),
        ("a later first acquisition (creating one resource)", later),
    ]
    rows += [
        Row("I4. phases of I1", what, "instr", {RL: value}, kind="phases")
        for what, value in derived
    ]
    data["phases"] = {
        "n": n,
        "phases": list(PHASES),
        RL: rl.rounds,
        FLOOR: floor.rounds,
        BARE: bare.rounds,
        "rl_one_template": one.rounds,
    }
    return rows


# -- issue #21: resourceloop beside its peers and the limit designs --------------------------

#: The column of the limit design a row compares with: (b) for the unmanaged lifetimes, (a) for
#: the managed cycle; the hit has none (the floor is its limit).
LIMIT = "limit design"

#: Who does each job of ``case_peers``, and what stands in a cell where a peer cannot do it.
PEER_JOBS: dict[str, list[str]] = {
    "run1": [RL, FLOOR, ATEXIT, LOOP_LOCAL, LIMIT_HOOK, PYOT],
    "run3": [RL, FLOOR, ATEXIT, LOOP_LOCAL, LIMIT_HOOK, PYOT],
    "managed": [RL, FLOOR, LIMIT_EXIT, PYOT],
    "hit": [RL, FLOOR, ATEXIT, LOOP_LOCAL, RUNVAR, PYOT],
}
_CANNOT = {
    ("run1", RUNVAR): "n/a: releases nothing at the loop's end",
    ("run3", RUNVAR): "n/a: releases nothing at the loop's end",
    ("managed", ATEXIT): "n/a: no manager",
    ("managed", LOOP_LOCAL): "n/a: no manager",
    ("managed", RUNVAR): "n/a: no manager, no release",
}
_MODULES = {ATEXIT: "asyncio_atexit", LOOP_LOCAL: "asyncio_loop_local", RUNVAR: "anyio"}
#: Targets of issue #21 (each row's own, in ``case_peers``).
_PEER_TARGETS = {
    "run": "<= 1.00x asyncio-atexit and <= 1.10x limit (b) (#21)",
    "managed": "<= 1.05x floor (#21)",
    "hit": "<= 1.05x floor (#21)",
    "extra": "<= 2.00x the floor's (#21)",
}


#: Printed under the table for an I5 row whose target does not hold.
WHY_PEERS = (
    "the phase tables say where resourceloop's instructions go: I4 for the unmanaged "
    "lifetime (3 templates, against the floor and a bare `asyncio.run`), I6 for the managed "
    "cycle (against the floor and limit (a)); I3's hit is one `acquire` call against one "
    "awaited dict lookup"
)


def _installed(impl: str) -> bool:
    if impl == PYOT:
        return pyot_module() is not None
    module = _MODULES.get(impl)
    return module is None or importlib.util.find_spec(module) is not None


def _peer_cells(workload: str, counts: dict[tuple[str, str], Count]) -> dict[str, Any]:
    """One row's cells: a count per column, or why there is none."""
    cells: dict[str, Any] = {}
    for impl in (RL, FLOOR, ATEXIT, LOOP_LOCAL, RUNVAR, PYOT):
        if (workload, impl) in counts:
            cells[impl] = counts[workload, impl].per_op()
        else:
            cells[impl] = _CANNOT.get((workload, impl)) or (
                "not installed" if not _installed(impl) else "n/a"
            )
    limit = LIMIT_EXIT if workload == "managed" else LIMIT_HOOK
    if (workload, limit) in counts:
        cells[LIMIT] = counts[workload, limit].per_op()
    return cells


def _ratio_of(cells: dict[str, Any], other: str) -> float | None:
    mine, theirs = cells.get(RL), cells.get(other)
    if isinstance(mine, float) and isinstance(theirs, float) and theirs > 0:
        return mine / theirs
    return None


def _peer_rows(counts: dict[tuple[str, str], Count], state: str) -> list[Row]:
    """The rows of one SIGINT state: 1 and 3 resources, managed, hit, per extra resource."""
    case = f"I5. SIGINT {state}"
    jobs = [
        ("run1", "unmanaged `asyncio.run` lifetime, 1 resource", "run", "(b)"),
        ("run3", "unmanaged `asyncio.run` lifetime, 3 resources", "run", "(b)"),
        (
            "managed",
            "managed cycle (`async with resource_manager(): await t.acquire()`)",
            "managed",
            "(a)",
        ),
        ("hit", "hit (`await t.acquire()`, resource held)", "hit", ""),
    ]
    rows: list[Row] = []
    for workload, metric, target, limit in jobs:
        cells = _peer_cells(workload, counts)
        checks: list[float | None]
        if target == "run":
            atexit, hook = _ratio_of(cells, ATEXIT), _ratio_of(cells, LIMIT)
            checks = [
                None if atexit is None else atexit - 1.00,
                None if hook is None else hook - 1.10,
            ]
        else:
            floor = _ratio_of(cells, FLOOR)
            checks = [None if floor is None else floor - 1.05]
        known = [c for c in checks if c is not None]
        rows.append(
            Row(
                case,
                metric,
                "instr",
                cells,
                target=_PEER_TARGETS[target],
                holds=all(c <= 0 for c in known) if known else None,
                note=(f"limit design {limit}; " if limit else "")
                + f"N={counts[workload, RL].n}; resourceloop {counts[workload, RL].describe()}",
                kind="peers",
                why=WHY_PEERS,
            )
        )
    one, three = rows[0].values, rows[1].values
    extra: dict[str, Any] = {}
    for name, value in one.items():
        more = three.get(name)
        extra[name] = (
            (more - value) / 2 if isinstance(more, float) and isinstance(value, float) else value
        )
    per = _ratio_of(extra, FLOOR)
    rows.append(
        Row(
            case,
            "per extra resource: (3-resource lifetime - 1-resource lifetime) / 2",
            "instr",
            extra,
            target=_PEER_TARGETS["extra"],
            holds=None if per is None else per <= 2.0,
            note="from the two rows above",
            kind="peers",
            why=WHY_PEERS,
        )
    )
    return rows


def case_peers(settings: Settings, data: Data) -> list[Row]:
    """Issue #21: each job done by resourceloop, the floor, its peers and the limit designs.

    The jobs: an unmanaged ``asyncio.run`` lifetime with 1 and with 3 resources, each created
    on first use and released at the loop's end; the managed cycle; the hit. The peers do
    each job their own way (``_callgrind_child``: asyncio-atexit with a close callback per
    loop, asyncio-loop-local's ``enter_once`` + ``singleton``, anyio's ``RunVar``, Pyot released
    by hand before the loop closes, since its purge deadlocks); where one cannot, its cell
    says why. Every job runs with SIGINT at its default and with SIGINT ignored: ``asyncio.run``
    installs a handler of its own only in the first state, which changes every ratio.
    """
    rows: list[Row] = []
    # I4's lifetimes and a tenth of I3's hits: a count per operation does not depend on how
    # many there are (I0), and a full run has 92 children (asyncio-loop-local's and RunVar's
    # hits cost nine times resourceloop's, Pyot's lifetimes twice); at I1's 200 lifetimes it
    # did not fit in the time there was on 2 cores shared with other work.
    loops, hits = settings.cg_phase_loops, settings.cg_hits // 10
    for state in SIGINT_STATES:
        jobs = [
            (
                workload,
                impl,
                hits if workload == "hit" else loops,
                settings.cg_warmup_hits if workload == "hit" else settings.cg_warmup_loops,
            )
            for workload, impls in PEER_JOBS.items()
            for impl in impls
            if _installed(impl)
        ]
        counts = count(jobs, settings.cg_rounds, settings.cg_jobs, settings.cg_keep, state)
        tag = "" if state == "default" else f" (SIGINT {state})"
        _record(data, counts, tag=tag)
        rows += _peer_rows(counts, state)
    return rows


def case_managed_phases(settings: Settings, data: Data) -> list[Row]:
    """Where the managed cycle's instructions go (issue #21): each phase of one cycle, for
    resourceloop, the floor and limit design (a), an ``async with`` that releases in its exit.
    """
    n, warmup = settings.cg_phase_loops, settings.cg_warmup_loops
    impls = (RL, FLOOR, LIMIT_EXIT)
    counts = count(
        [("managed_phases", impl, n, warmup) for impl in impls],
        settings.cg_rounds,
        settings.cg_jobs,
        settings.cg_keep,
    )
    for label in MANAGED_PHASES:
        _record(data, {("managed_phases", RL): counts["managed_phases", RL]}, label)
    rows: list[Row] = []
    for label in (*MANAGED_PHASES, "whole cycle"):
        labels = MANAGED_PHASES if label == "whole cycle" else (label,)
        values: dict[str, Any] = {
            LIMIT if impl == LIMIT_EXIT else impl: sum(
                counts["managed_phases", impl].per_op(part) for part in labels
            )
            for impl in impls
        }
        rows.append(Row("I6. phases of the managed cycle", label, "instr", values, kind="phases"))
    data["managed_phases"] = {
        "n": n,
        "phases": list(MANAGED_PHASES),
        **{impl: counts["managed_phases", impl].rounds for impl in impls},
    }
    return rows


def repeatability(data: Data) -> Row | None:
    """One row: the largest spread between runs of any measurement of resourceloop or the floor.

    Pyot's are left out of the target and named in the note: its first acquisition and its
    releases go through a thread pool, whose scheduling is not the same from run to run.
    ``None`` when no instruction case ran.
    """
    if "instructions" not in data:
        return None
    spreads: list[tuple[str, str, str, float]] = data.get("instruction_spreads", [])
    case, metric = "I0. repeatability", "largest spread between two runs of one measurement"
    ours = [s for s in spreads if s[0] != PYOT]
    if not ours:
        return Row(
            case,
            metric,
            "",
            {RL: "not checked (one run per measurement)"},
            target="<= 0.1%",
            ratios=False,
            kind="instructions",
        )
    _, name, label, worst = max(ours, key=lambda s: s[3])
    note = (
        f"{len(ours)} measurements of resourceloop and the floor; the largest is {name} ({label})"
    )
    pyot = [s for s in spreads if s[0] == PYOT]
    if pyot:
        _, pname, _, pworst = max(pyot, key=lambda s: s[3])
        note += (
            f"; Pyot's (thread-pool scheduling varies) up to {pworst * 100:.3f}% ({pname}), "
            "left out of the target"
        )
    return Row(
        case,
        metric,
        "%",
        {RL: round(worst * 100, 3)},
        target="<= 0.1%",
        holds=worst <= 0.001,
        ratios=False,
        note=note,
        kind="instructions",
    )


INSTRUCTION_CASES: dict[str, Callable[[Settings, Data], list[Row]]] = {
    "i1": case_run3,
    "i2": case_managed,
    "i3": case_hit,
    "i4": case_phases,
    "i5": case_peers,
    "i6": case_managed_phases,
}
