"""What several wall-time cases share: the floor, Pyot's templates, the hit loop, Pyot's churn.

The floor (``_floor_acquire``, the hand-written per-loop dict) is the same in every case, and
cases 1 and 6 measure hits with the same loop, cases 4 and 5 run Pyot's unmanaged churn in the
same subprocess (``_pyot_child``); keeping one copy of each here is what lets the cases live
in modules of their own (``_cases`` gathers them in ``CASES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import resourceloop

from ._harness import (
    FLOOR,
    PYOT,
    RL,
    PyotTemplates,
    Resource,
    Settings,
    make_resource,
    median,
    now,
    pyot_missing,
    pyot_module,
)

__all__ = [
    "Data",
    "_default_executor",
    "_floor_acquire",
    "_live_templates",
    "_measure_hits",
    "_pyot_cell",
    "_pyot_churn",
    "_pyot_templates",
    "_values",
]


Data = dict[str, Any]


def _live_templates() -> int:
    gc.collect()
    return len(resourceloop.resource_templates)


@contextlib.contextmanager
def _pyot_templates(count: int) -> Iterator[PyotTemplates | None]:
    if pyot_module() is None:
        yield None
        return
    templates = PyotTemplates(count)
    try:
        yield templates
    finally:
        templates.close()


def _default_executor(loop: asyncio.AbstractEventLoop) -> object:
    return getattr(loop, "_default_executor", None)


async def _floor_acquire(table: dict[asyncio.AbstractEventLoop, Resource]) -> Resource:
    """The hand-written per-loop dict: what every user of a per-loop resource writes first."""
    loop = asyncio.get_running_loop()
    resource = table.get(loop)
    if resource is None:
        resource = table[loop] = make_resource()
    return resource


async def _measure_hits(
    rl: resourceloop.ResourceTemplate[Resource],
    pyot: Any,
    table: dict[asyncio.AbstractEventLoop, Resource],
    calls: int,
    rounds: int,
) -> dict[str, list[float]]:
    """Nanoseconds per ``await`` of an acquisition the running loop already holds."""
    loop = asyncio.get_running_loop()
    table[loop] = make_resource()
    expected = {RL: await rl.acquire(), FLOOR: table[loop]}

    async def floor_get() -> Resource:
        return table[asyncio.get_running_loop()]

    async def run_rl() -> float:
        start = now()
        for _ in range(calls):
            await rl.acquire()
        return (now() - start) / calls * 1e9

    async def run_floor() -> float:
        start = now()
        for _ in range(calls):
            await floor_get()
        return (now() - start) / calls * 1e9

    runners: dict[str, Callable[[], Awaitable[float]]] = {RL: run_rl, FLOOR: run_floor}
    if pyot is not None:
        expected[PYOT] = await pyot.acquire()

        async def run_pyot() -> float:
            start = now()
            for _ in range(calls):
                await pyot.acquire()
            return (now() - start) / calls * 1e9

        runners[PYOT] = run_pyot
    assert await rl.acquire() is expected[RL]
    assert await floor_get() is expected[FLOOR]
    if pyot is not None:
        assert await pyot.acquire() is expected[PYOT]
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await runners[name]())
    if pyot is not None:
        await pyot.release()
    del table[loop]
    return samples


def _values(samples: dict[str, list[float]], with_pyot: bool) -> dict[str, Any]:
    values: dict[str, Any] = {name: median(s) for name, s in samples.items()}
    if not with_pyot:
        values[PYOT] = pyot_missing()
    return values


def _pyot_churn(threads: list[int], loops: int, settings: Settings) -> list[dict[str, Any]]:
    """Run Pyot's unmanaged churn in a child process; see ``_pyot_child``."""
    params = {"threads": threads, "loops": loops, "templates": 3, "stall": settings.pyot_stall}
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    # A generous outer bound: the child detects the hang itself; this only guards the runner.
    budget = 60.0 + len(threads) * (settings.pyot_stall + 30.0)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks._pyot_child", json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=budget,
            env=env,
            cwd=root,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [{"threads": n, "error": f"child hung past {budget:.0f} s"} for n in threads]
    lines = out.stdout.strip().splitlines()
    try:
        result: list[dict[str, Any]] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        return [{"threads": n, "error": f"child failed: {tail[0]}"} for n in threads]
    return result


def _pyot_cell(result: dict[str, Any], per_loop_us: bool = True) -> Any:
    if "error" in result:
        return result["error"]
    if result["deadlock"]:
        return f"deadlock after {result['loops']} loops"
    if result.get("errors"):
        return f"failed: {result['errors'][0]}"
    if per_loop_us:
        return result["seconds"] / max(result["loops"], 1) * 1e6
    return result["seconds"]
