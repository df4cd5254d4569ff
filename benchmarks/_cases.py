"""The six wall-time cases of issue #4, each returning rows for the report (and data for the plot).

Their targets are issue #11's where it sets one (it replaced #4's: the hit <= 1.0x floor became
<= 1.10x; threaded churn overhead <= 10% became <= 50%; the managed cycle's <= 1.15x floor in
wall time became <= 1.25x floor in instructions, case ``i2`` in ``_instructions``), and #4's
otherwise. Each target names its issue.

resourceloop and the floor always run in this process, interleaved round by round. Pyot runs
here too where it cannot hang (cases 1, 2, 3 and 6: every loop it touches is released before
it closes); its unmanaged churn (cases 4 and 5) runs in a subprocess, see ``_pyot_child``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import resourceloop

from ._harness import (
    FLOOR,
    PYOT,
    RL,
    PyotTemplates,
    Resource,
    Row,
    Settings,
    close_resource,
    interleave,
    make_resource,
    median,
    now,
    pyot_missing,
    pyot_module,
)
from ._portal import case_portal

__all__ = ["CASES"]

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


# -- 1. hit ----------------------------------------------------------------------------------


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


def case_hit(settings: Settings, data: Data) -> list[Row]:
    rl = resourceloop.ResourceTemplate(make_resource, close_resource, name="bench-hit")
    with _pyot_templates(1) as pyot:
        samples = asyncio.run(
            _measure_hits(
                rl,
                pyot.templates[0] if pyot else None,
                {},
                settings.hit_calls,
                settings.rounds,
            )
        )
        coroutine_function: dict[str, Any] = {
            RL: inspect.iscoroutinefunction(rl.acquire),
            FLOOR: True,  # an ``async def``
            PYOT: inspect.iscoroutinefunction(pyot.templates[0].acquire) if pyot else None,
        }
    values = _values(samples, pyot is not None)
    data["hit"] = samples
    ratio = values[RL] / values[FLOOR]
    cells: dict[str, Any] = {
        name: pyot_missing() if value is None else ("yes" if value else "no")
        for name, value in coroutine_function.items()
    }
    return [
        Row(
            "1. hit",
            "`await t.acquire()`, resource held",
            "ns",
            values,
            target="<= 1.10x floor (#11)",
            holds=ratio <= 1.10,
        ),
        Row(
            "1. hit",
            "acquire is a coroutine function (`inspect.iscoroutinefunction(t.acquire)`)",
            "",
            cells,
            target="yes (#11)",
            holds=coroutine_function[RL],
            ratios=False,
        ),
    ]


# -- 2. first acquisition --------------------------------------------------------------------


def case_first(settings: Settings, data: Data) -> list[Row]:
    rl = resourceloop.ResourceTemplate(make_resource, close_resource, name="bench-first")
    table: dict[asyncio.AbstractEventLoop, Resource] = {}
    hops: dict[str, bool] = {}

    def batch(
        acquire: Callable[[], Awaitable[Any]], after: Callable[[], Awaitable[Any]] | None, name: str
    ) -> float:
        total = 0.0
        for _ in range(settings.first_loops):
            loop = asyncio.new_event_loop()

            async def one(loop: asyncio.AbstractEventLoop = loop) -> float:
                start = now()
                await acquire()
                elapsed = now() - start
                hops[name] = hops.get(name, False) or _default_executor(loop) is not None
                if after is not None:
                    await after()
                return elapsed

            try:
                total += loop.run_until_complete(one())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()  # resourceloop's close hook releases here, untimed
        return total / settings.first_loops * 1e6

    async def floor_release() -> None:
        await table.pop(asyncio.get_running_loop()).aclose()

    runners: dict[str, Callable[[], float]] = {
        RL: lambda: batch(rl.acquire, None, RL),
        FLOOR: lambda: batch(lambda: _floor_acquire(table), floor_release, FLOOR),
    }
    with _pyot_templates(1) as pyot:
        if pyot is not None:
            pt = pyot.templates[0]
            runners[PYOT] = lambda: batch(pt.acquire, pt.release, PYOT)
        samples = interleave(runners, settings.rounds)
    values = _values(samples, pyot is not None)
    data["first"] = samples
    hop_values: dict[str, Any] = {n: ("yes" if h else "no") for n, h in hops.items()}
    if pyot is None:
        hop_values[PYOT] = pyot_missing()
    return [
        Row("2. first acquisition", "first `acquire()` on a fresh loop", "us", values),
        Row(
            "2. first acquisition",
            "thread-pool hop on first acquisition",
            "",
            hop_values,
            target="no hop",
            holds=not hops[RL],
            ratios=False,
        ),
    ]


# -- 3. managed cycle ------------------------------------------------------------------------

#: Where the time goes when case 3's target does not hold (cProfile of 2,000 cycles, 2026-12-01).
WHY_MANAGED = (
    "the floor awaits one dict lookup and one `aclose()` inline; resourceloop, for each new loop, "
    "tracks it (a registry entry under the lock, a `weakref.finalize`, the close hook installed "
    "on the instance, the reaper started or woken), acquires every non-lazy template on manager "
    "entry, runs each release as a task of its own under `release_timeout` on exit, and still "
    "runs the close hook at `loop.close()`; under cProfile, manager entry took 17% of the cycle, "
    "the close hook 9% and manager exit 6%. The <= 0.25x Pyot half of the target holds"
)


def case_managed(settings: Settings, data: Data) -> list[Row]:
    rl = resourceloop.ResourceTemplate(make_resource, close_resource, name="bench-managed")
    note = ""
    if _live_templates() != 1:
        note = f"{len(resourceloop.resource_templates)} templates registered, expected 1"
    table: dict[asyncio.AbstractEventLoop, Resource] = {}

    async def rl_main() -> None:
        async with resourceloop.resource_manager():
            await rl.acquire()

    async def floor_main() -> None:
        await _floor_acquire(table)
        await table.pop(asyncio.get_running_loop()).aclose()

    def batch(main: Callable[[], Coroutine[Any, Any, None]]) -> float:
        start = now()
        for _ in range(settings.managed_loops):
            asyncio.run(main())
        return (now() - start) / settings.managed_loops * 1e6

    runners: dict[str, Callable[[], float]] = {
        RL: lambda: batch(rl_main),
        FLOOR: lambda: batch(floor_main),
    }
    with _pyot_templates(1) as pyot:
        if pyot is not None:
            pt, manager = pyot.templates[0], pyot.module.resource_manager

            async def pyot_main() -> None:
                async with manager():
                    await pt.acquire()

            runners[PYOT] = lambda: batch(pyot_main)
        samples = interleave(runners, settings.rounds)
    values = _values(samples, pyot is not None)
    data["managed"] = samples
    # Issue #4 also asked for <= 1.15x the floor here, in wall time; #11 replaced that with
    # <= 1.25x the floor in instructions (case i2), which a busy machine cannot move.
    holds = values[RL] <= 0.25 * values[PYOT] if pyot is not None else None
    note = "; ".join(
        filter(None, [note, "against the floor, the target is in instructions: I2 (#11)"])
    )
    return [
        Row(
            "3. managed cycle",
            "`asyncio.run`: enter manager, acquire, exit",
            "us",
            values,
            target="<= 0.25x Pyot (#4)",
            holds=holds,
            note=note,
            why=WHY_MANAGED,
        )
    ]


# -- Pyot's unmanaged churn, in a subprocess -------------------------------------------------


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


# -- 4. threaded churn -----------------------------------------------------------------------


def _run_threads(n_threads: int, per_thread: int, main: Callable[[], Any]) -> float:
    """Wall-clock seconds for ``n_threads`` threads each running ``per_thread`` loops."""
    barrier = threading.Barrier(n_threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = now()
    for thread in threads:
        thread.join()
    elapsed = now() - start
    if errors:
        raise errors[0]
    return elapsed


def _three_resource_mains(
    templates: list[resourceloop.ResourceTemplate[Resource]],
    tables: list[dict[asyncio.AbstractEventLoop, Resource]],
) -> tuple[Callable[[], Coroutine[Any, Any, None]], Callable[[], Coroutine[Any, Any, None]]]:
    """One loop's work in the churn cases: resourceloop acquires the templates and leaves the
    release to the close hook; the floor gets one resource per dict in ``tables`` and closes
    them by hand."""

    async def rl_main() -> None:
        for template in templates:
            await template.acquire()

    async def floor_main() -> None:
        for table in tables:
            await _floor_acquire(table)
        loop = asyncio.get_running_loop()
        for table in tables:
            await table.pop(loop).aclose()

    return rl_main, floor_main


#: Where the time goes when case 4's target does not hold (callgrind phases, I4, 2026-12-02).
WHY_CHURN = (
    "the floor closes its three resources inline at the end of the coroutine; resourceloop "
    "releases them from the close hook, which runs one more `run_until_complete` pass on the "
    "loop just before the real close, so that releases run in a task on a running loop "
    "(sniffio and `asyncio.timeout` need one), and it tracks each new loop on first "
    "acquisition (its state, weakref callback, store, hook installation); per loop lifetime "
    "that is about +157k instructions at `loop.close()` (115k fixed) and +68k at the first "
    "acquisition (54k tracking) over the floor's 565k (see the instruction phases). More "
    "threads add contention on the registry lock and the GIL"
)


def case_churn(settings: Settings, data: Data) -> list[Row]:
    templates = [
        resourceloop.ResourceTemplate(make_resource, close_resource, name=f"bench-churn-{i}")
        for i in range(3)
    ]
    tables: list[dict[asyncio.AbstractEventLoop, Resource]] = [{}, {}, {}]
    rl_main, floor_main = _three_resource_mains(templates, tables)

    rows: list[Row] = []
    plot: dict[str, Any] = {"threads": list(settings.churn_threads), RL: [], FLOOR: []}
    for n_threads in settings.churn_threads:
        per_thread = max(1, settings.churn_loops // n_threads)
        loops = per_thread * n_threads

        def runner(
            main: Callable[[], Any], n: int = n_threads, per: int = per_thread
        ) -> Callable[[], float]:
            return lambda: _run_threads(n, per, main) / (n * per) * 1e6

        samples = interleave({RL: runner(rl_main), FLOOR: runner(floor_main)}, settings.rounds)
        values: dict[str, Any] = {name: median(s) for name, s in samples.items()}
        overhead = values[RL] / values[FLOOR] - 1.0
        plot[RL].append(values[RL])
        plot[FLOOR].append(values[FLOOR])
        plot.setdefault("overhead", []).append(overhead)
        rows.append(
            Row(
                "4. threaded churn",
                f"T={n_threads}: per `asyncio.run` acquiring 3 templates ({loops} loops)",
                "us",
                values,
                target="overhead <= 50% (#11)",
                holds=overhead <= 0.50,
                why=WHY_CHURN,
                note=(
                    f"overhead {overhead * 100:+.1f}% "
                    f"({values[RL] - values[FLOOR]:+.1f} us per loop)"
                ),
            )
        )
    resourceloop.reap()
    leftover = resourceloop.stats().loops_tracked
    if pyot_module() is None:
        for row in rows:
            row.values[PYOT] = pyot_missing()
    else:
        results = _pyot_churn(list(settings.churn_threads), settings.churn_loops, settings)
        plot[PYOT] = results
        for row, result in zip(rows, results, strict=True):
            row.values[PYOT] = _pyot_cell(result)
    if leftover:
        rows[-1].note += f"; {leftover} loops still tracked after reap()"
    data["churn"] = plot
    return rows


# -- 5. unmanaged churn and memory -----------------------------------------------------------


_PACKAGE_DIR = os.path.dirname(os.path.abspath(resourceloop.__file__))
_TRACE_DEPTH = 48  # deep enough to reach resourceloop's frames from any allocation


def _traced(filters: list[tracemalloc.Filter]) -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(filters)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _summary(samples: list[float]) -> dict[str, float]:
    """Count, median, 90th and 99th percentiles and maximum (the raw list is too long)."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "median": median(ordered),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": ordered[-1],
    }


def _count_loops() -> int:
    gc.collect()
    # type(), not isinstance(): isinstance reads __class__, which lazy proxies (Django's
    # settings, installed by the test extra) answer by raising.
    loop_type = asyncio.AbstractEventLoop
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), loop_type))


def _close_like_asyncio_run(loop: asyncio.AbstractEventLoop) -> float:
    """Finish a loop the way ``asyncio.run`` does; return when ``close()`` was called."""
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    closed_at = now()
    loop.close()
    return closed_at


def case_unmanaged(settings: Settings, data: Data) -> list[Row]:
    released: list[float] = []

    def tracked_resource() -> Resource:
        return Resource(on_close=lambda: released.append(now()))

    templates = [
        resourceloop.ResourceTemplate(tracked_resource, close_resource, name=f"bench-unmanaged-{i}")
        for i in range(3)
    ]
    tables: list[dict[asyncio.AbstractEventLoop, Resource]] = [{}, {}, {}]
    rl_main, floor_main = _three_resource_mains(templates, tables)

    def one_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> float | None:
        """Run one loop; the seconds from ``close()`` to the last release, if it was released."""
        del released[:]
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            closed_at = _close_like_asyncio_run(loop)
        if len(released) == 3 and released[-1] >= closed_at:
            return released[-1] - closed_at
        return None

    # Timed passes, interleaved: time per loop and close-to-release latency.
    latencies: list[float] = []
    missed = [0]
    n = settings.unmanaged_loops

    def timed(main: Callable[[], Coroutine[Any, Any, None]], record: bool) -> float:
        start = now()
        for _ in range(n):
            latency = one_loop(main)
            if record:
                if latency is None:
                    missed[0] += 1
                else:
                    latencies.append(latency)
        return (now() - start) / n * 1e6

    samples = interleave(
        {RL: lambda: timed(rl_main, True), FLOOR: lambda: timed(floor_main, False)},
        settings.unmanaged_rounds,
    )

    # Memory passes, one per implementation, under tracemalloc.
    ours = [tracemalloc.Filter(True, f"{_PACKAGE_DIR}{os.sep}*", all_frames=True)]

    def memory(main: Callable[[], Coroutine[Any, Any, None]]) -> dict[str, Any]:
        """Traced growth over ``n`` loops, in all and under resourceloop's own frames.

        The second figure is what resourceloop (or a resource it created) still holds; the
        first also moves with one-off resizes of interpreter-wide tables.
        """
        step = max(1, n // 20)
        for _ in range(100):
            one_loop(main)
        gc.collect()
        resourceloop.reap()
        gc.collect()
        loops_before = _count_loops()
        tracemalloc.start(_TRACE_DEPTH)
        try:
            base = tracemalloc.get_traced_memory()[0]
            base_ours = _traced(ours)
            curve: list[tuple[int, float]] = [(0, 0.0)]
            for index in range(1, n + 1):
                one_loop(main)
                if index % step == 0:
                    gc.collect()
                    curve.append((index, (tracemalloc.get_traced_memory()[0] - base) / 1024))
            resourceloop.reap()
            gc.collect()
            growth = (tracemalloc.get_traced_memory()[0] - base) / 1024
            growth_ours = (_traced(ours) - base_ours) / 1024
        finally:
            tracemalloc.stop()
        return {
            "growth_kib": growth,
            "growth_ours_kib": growth_ours,
            "curve": curve,
            "loops_live": _count_loops() - loops_before,
        }

    rl_memory = memory(rl_main)
    rl_entries = resourceloop.stats().loops_tracked
    rl_resources = sum(resourceloop.stats().resources_live.values())
    floor_memory = memory(floor_main)
    floor_entries = sum(len(t) for t in tables)

    pyot_result: dict[str, Any] | None = None
    if pyot_module() is not None:
        pyot_result = _pyot_churn([1], n, settings)[0]

    def pyot_value(what: str) -> Any:
        if pyot_result is None:
            return pyot_missing()
        if what == "time" or "error" in pyot_result or pyot_result.get("deadlock"):
            return _pyot_cell(pyot_result)
        return "n/a"

    latency_values: dict[str, Any] = {
        RL: median(latencies) * 1e6 if latencies else "never at close",
        FLOOR: "n/a (released by hand before close)",
        PYOT: pyot_value("latency"),
    }
    latency_max: dict[str, Any] = {
        RL: max(latencies) * 1e6 if latencies else "never at close",
        FLOOR: "n/a",
        PYOT: pyot_value("latency"),
    }
    data["unmanaged"] = {
        "loops": n,
        "per_loop_us": samples,
        RL: rl_memory,
        FLOOR: floor_memory,
        PYOT: pyot_result,
        "latency_us": _summary([x * 1e6 for x in latencies]),
        "not_released_at_close": missed[0],
    }
    label = f"{n:,} loops"
    per_loop = {k: median(v) for k, v in samples.items()}
    return [
        Row(
            "5. unmanaged churn",
            f"per loop, 3 templates, no manager ({label})",
            "us",
            {**per_loop, PYOT: pyot_value("time")},
            target="<= 1.6x floor (#11)",
            holds=per_loop[RL] <= 1.6 * per_loop[FLOOR],
        ),
        Row(
            "5. unmanaged churn",
            f"retained memory allocated under resourceloop frames, {label} + one reap",
            "KiB",
            {
                RL: rl_memory["growth_ours_kib"],
                FLOOR: "n/a",
                PYOT: pyot_value("memory"),
            },
            target="< 64 KiB",
            holds=rl_memory["growth_ours_kib"] < 64,
            ratios=False,
        ),
        Row(
            "5. unmanaged churn",
            f"retained memory, whole process, {label} + one reap (tracemalloc)",
            "KiB",
            {
                RL: rl_memory["growth_kib"],
                FLOOR: floor_memory["growth_kib"],
                PYOT: pyot_value("memory"),
            },
            ratios=False,
            note=(
                "includes a one-off step: a single block of about 940 KiB allocated inside "
                "`time.get_clock_info` (called by `BaseEventLoop.__init__`), an "
                "interpreter-wide table growing; plain asyncio churn without resourceloop "
                "shows the same step. It is not under resourceloop's frames: the row above "
                "is what resourceloop retains"
                if rl_memory["growth_kib"] - rl_memory["growth_ours_kib"] > 64
                else ""
            ),
        ),
        Row(
            "5. unmanaged churn",
            "live registry entries / live resources after one reap",
            "",
            {
                RL: f"{rl_entries} / {rl_resources}",
                FLOOR: f"{floor_entries} / {floor_entries}",
                PYOT: pyot_value("entries"),
            },
            target="0",
            holds=rl_entries == 0 and rl_resources == 0,
            ratios=False,
        ),
        Row(
            "5. unmanaged churn",
            "live loop objects after one reap",
            "",
            {
                RL: rl_memory["loops_live"],
                FLOOR: floor_memory["loops_live"],
                PYOT: pyot_value("loops"),
            },
            target="0",
            holds=rl_memory["loops_live"] == 0,
            ratios=False,
        ),
        Row(
            "5. unmanaged churn",
            "`loop.close()` to release, median (max)",
            "us",
            latency_values,
            ratios=False,
            note=(
                f"max {latency_max[RL]:.0f} us; {missed[0]} of {len(latencies) + missed[0]} "
                "loops not released during close()"
                if latencies
                else ""
            ),
        ),
    ]


# -- 6. scale --------------------------------------------------------------------------------


def case_scale(settings: Settings, data: Data) -> list[Row]:
    n = settings.scale_loops
    rl = resourceloop.ResourceTemplate(make_resource, close_resource, name="bench-scale")
    table: dict[asyncio.AbstractEventLoop, Resource] = {}
    with _pyot_templates(1) as pyot:
        pt = pyot.templates[0] if pyot is not None else None
        parked = threading.Barrier(n + 1)
        go = threading.Event()
        errors: list[BaseException] = []

        async def park() -> None:
            loop = asyncio.get_running_loop()
            await rl.acquire()
            if pt is not None:
                await pt.acquire()
            await _floor_acquire(table)
            parked.wait()  # blocks this loop's thread: the loop stays "running"
            go.wait()
            if pt is not None:
                await pt.release()
            del table[loop]

        def worker() -> None:
            try:
                asyncio.run(park())
            except BaseException as exc:
                errors.append(exc)
                parked.abort()

        old_stack = threading.stack_size(512 * 1024)
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
        try:
            for thread in threads:
                thread.start()
            parked.wait(timeout=300)
        finally:
            threading.stack_size(old_stack)
        tracked = resourceloop.stats().loops_tracked

        async def measure() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
            passes = 5

            async def rl_pass() -> float:
                start = now()
                for _ in range(passes):
                    resourceloop.reap()
                return (now() - start) / passes * 1e3

            async def floor_pass() -> float:
                start = now()
                for _ in range(passes):
                    [loop for loop in list(table) if loop.is_closed()]
                return (now() - start) / passes * 1e3

            runners: dict[str, Callable[[], Awaitable[float]]] = {RL: rl_pass, FLOOR: floor_pass}
            if pt is not None:

                async def pyot_pass() -> float:
                    start = now()
                    for _ in range(passes):
                        await pt.purge()
                    return (now() - start) / passes * 1e3

                runners[PYOT] = pyot_pass
            reaps: dict[str, list[float]] = {name: [] for name in runners}
            names = list(runners)
            for index in range(settings.scale_rounds):
                shift = index % len(names)
                for name in names[shift:] + names[:shift]:
                    reaps[name].append(await runners[name]())
            hits = await _measure_hits(rl, pt, table, settings.hit_calls, settings.scale_rounds)
            return reaps, hits

        try:
            reaps, hits = asyncio.run(measure())
        finally:
            go.set()
            for thread in threads:
                thread.join(timeout=60)
    if errors:
        raise errors[0]
    resourceloop.reap()
    after = resourceloop.stats().loops_tracked
    reap_values = _values(reaps, pt is not None)
    hit_values = _values(hits, pt is not None)
    data["scale"] = {"loops": n, "tracked": tracked, "reap_ms": reaps, "hit_ns": hits}
    hit_ratio = hit_values[RL] / hit_values[FLOOR]
    base = data.get("hit")
    base_ratio = median(base[RL]) / median(base[FLOOR]) if base else None
    hit_note = f"{n} loops parked" + (
        f"; case 1 ratio was {base_ratio:.2f}x" if base_ratio is not None else ""
    )
    return [
        Row(
            "6. scale",
            f"one reaper pass, {n:,} live loops ({tracked} tracked)",
            "ms",
            reap_values,
            target="< 5 ms",
            holds=reap_values[RL] < 5.0,
            note="Pyot: `purge()`; floor: scan of a dict for closed loops",
        ),
        Row(
            "6. scale",
            f"hit with {n:,} other loops holding the resource",
            "ns",
            hit_values,
            target="unchanged (<= 1.10x floor, #11)",
            holds=hit_ratio <= 1.10,
            note=hit_note + (f"; {after} still tracked after close + reap" if after else ""),
        ),
    ]


CASES: dict[str, Callable[[Settings, Data], list[Row]]] = {
    "1": case_hit,
    "2": case_first,
    "3": case_managed,
    "4": case_churn,
    "5": case_unmanaged,
    "6": case_scale,
    "portal": case_portal,  # issue #13; its own table: see _portal
}
