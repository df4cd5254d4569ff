"""Timing helpers, the sample resource, run settings and the peers that are installed.

Every comparison runs the implementations in interleaved rounds (the order rotates each round)
and keeps the median of the rounds, so a noisy neighbour slows all of them alike rather than
one of them.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "FLOOR",
    "PYOT",
    "RL",
    "Resource",
    "Row",
    "Settings",
    "environment",
    "git_state",
    "interleave",
    "median",
    "pyot_module",
]

RL = "resourceloop"
PYOT = "Pyot"
FLOOR = "floor"

Value = float | int | str | None


class Resource:
    """A stand-in for a client session: created synchronously, closed by an ``async`` method.

    This is the shape of Pyot's own templates (``SafeClientSession(...)`` and
    ``session.close()``), minus the network.
    """

    __slots__ = ("closed", "on_close")

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        self.closed = False
        self.on_close = on_close

    async def aclose(self) -> None:
        self.closed = True
        if self.on_close is not None:
            self.on_close()


def make_resource() -> Resource:
    return Resource()


def close_resource(resource: Resource) -> Any:
    return resource.aclose()


@dataclasses.dataclass
class Settings:
    """Counts for one run; ``quick()`` keeps every case but shrinks the counts."""

    quick: bool
    rounds: int
    hit_calls: int
    first_loops: int
    managed_loops: int
    churn_threads: tuple[int, ...]
    churn_loops: int  # loops per thread count (split among the threads), per round
    unmanaged_loops: int
    unmanaged_rounds: int
    scale_loops: int
    scale_rounds: int
    pyot_stall: float  # seconds without progress that count as a deadlock
    # Case 7 (issue #21): tracked loops per population, and idle loops for the memory figures.
    tracked_counts: tuple[int, ...] = (100, 1_000, 5_000)
    tracked_memory_loops: int = 1_000
    # Instruction counts (``--instructions``): operations per callgrind child, runs per
    # measurement (2 checks repeatability), children side by side.
    cg_loops: int = 200
    cg_phase_loops: int = 60
    cg_warmup_loops: int = 30
    cg_hits: int = 50_000
    cg_warmup_hits: int = 2_000
    cg_rounds: int = 2
    cg_jobs: int = 2
    cg_keep: Path | None = None  # where to keep the callgrind files (``--callgrind-dir``)

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            rounds=9,
            hit_calls=200_000,
            first_loops=300,
            managed_loops=300,
            churn_threads=(1, 2, 4, 8, 16),
            churn_loops=1_600,
            unmanaged_loops=10_000,
            unmanaged_rounds=3,
            scale_loops=1_000,
            scale_rounds=9,
            pyot_stall=5.0,
        )

    @classmethod
    def quick_(cls) -> Settings:
        return cls(
            quick=True,
            rounds=3,
            hit_calls=20_000,
            first_loops=40,
            managed_loops=40,
            churn_threads=(1, 2, 4, 8, 16),
            churn_loops=160,
            unmanaged_loops=100,
            unmanaged_rounds=1,
            scale_loops=100,
            scale_rounds=3,
            pyot_stall=1.5,
            tracked_counts=(100,),
            tracked_memory_loops=100,
            cg_loops=30,
            cg_phase_loops=10,
            cg_warmup_loops=15,
            cg_hits=5_000,
            cg_warmup_hits=1_000,
            cg_rounds=1,
        )


@dataclasses.dataclass
class Row:
    """One line of the results table. Times are in the row's unit; lower is better."""

    case: str
    metric: str
    unit: str
    values: dict[str, Value]
    target: str = ""
    holds: bool | None = None
    note: str = ""
    ratios: bool = True  # whether resourceloop/floor and resourceloop/Pyot make sense here
    kind: str = "wall"  # "wall" (times), "instructions" (callgrind) or "phases" (callgrind)
    #: Where the time goes, printed under the table when the target does not hold.
    why: str = ""

    def ratio(self, other: str) -> float | None:
        mine, theirs = self.values.get(RL), self.values.get(other)
        if not self.ratios or not isinstance(mine, int | float):
            return None
        if not isinstance(theirs, int | float) or theirs <= 0:
            return None
        return float(mine) / float(theirs)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def interleave(
    runners: dict[str, Callable[[], float]], rounds: int, *, collect: bool = True
) -> dict[str, list[float]]:
    """Run each runner once per round, rotating the order; return every sample per name."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if collect:
                gc.collect()
            samples[name].append(runners[name]())
    return samples


# -- peers -----------------------------------------------------------------------------------

_pyot: ModuleType | None = None
_pyot_error: str | None = None


def pyot_module() -> ModuleType | None:
    """``pyot.core.resources`` if Pyot is installed and importable, else ``None``."""
    global _pyot, _pyot_error
    if _pyot is not None or _pyot_error is not None:
        return _pyot
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _pyot = importlib.import_module("pyot.core.resources")
    except ModuleNotFoundError:
        _pyot_error = "not installed"
    except Exception as exc:  # a broken install is reported, not fatal
        _pyot_error = f"import failed: {type(exc).__name__}"
    if _pyot is not None:
        warnings.filterwarnings("ignore", category=_pyot_warning_class())
    return _pyot


def pyot_missing() -> str:
    """What to show in Pyot's cells when it cannot run."""
    pyot_module()
    return _pyot_error or "not installed"


def _pyot_warning_class() -> type[Warning]:
    module = importlib.import_module("pyot.core.warnings")
    cls: type[Warning] = module.PyotResourceWarning
    return cls


class PyotTemplates:
    """Pyot templates for one case, kept out of Pyot's global list once the case is over.

    Pyot's ``ResourceManager`` acquires every template in ``resource_templates``; a case only
    wants its own there.
    """

    def __init__(self, count: int) -> None:
        module = pyot_module()
        assert module is not None
        self.module = module
        self.saved = list(module.resource_templates)
        module.resource_templates.clear()
        self.templates = [
            module.ResourceTemplate(make_resource, close_resource) for _ in range(count)
        ]

    def close(self) -> None:
        self.module.resource_templates[:] = self.saved
        self.templates.clear()


# -- environment -----------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> tuple[str, list[str]]:
    """The commit checked out, and the files that differ from it (results excluded).

    The results directory is left out: a run rewrites it, and it says nothing about the code
    that was measured.
    """
    commit = (_git("rev-parse", "HEAD") or "").strip() or "unknown"
    status = _git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"
    )
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return commit, changed


def environment() -> dict[str, Any]:
    import resourceloop

    commit, changed = git_state()
    try:
        load: Any = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = "unknown"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "resourceloop": resourceloop.__version__,
        "commit": commit,
        "dirty": changed,
        "pyot": _version("pyot") if pyot_module() is not None else pyot_missing(),
        "matplotlib": _version("matplotlib"),
        # Issue #21's peers (``_instructions.case_peers``).
        "asyncio_atexit": _version("asyncio-atexit"),
        "asyncio_loop_local": _version("asyncio-loop-local"),
        "anyio": _version("anyio"),
        "argv": " ".join(sys.argv[1:]),
    }


def now() -> float:
    return time.perf_counter()
