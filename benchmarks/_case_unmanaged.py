"""Case 5, unmanaged churn and memory: loops used with no manager, closed, then dropped.

Per loop it measures the cost, how long ``loop.close()`` takes to release, and, after one
reap, what is left: memory retained under resourceloop's frames and in the whole process
(``tracemalloc``), registry entries, resources and loop objects still alive. The longest case,
with tracing helpers of its own, so it has a module of its own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import resourceloop

from ._case_churn import _three_resource_mains
from ._case_common import (
    Data,
    _pyot_cell,
    _pyot_churn,
)
from ._harness import (
    FLOOR,
    PYOT,
    RL,
    Resource,
    Row,
    Settings,
    close_resource,
    interleave,
    median,
    now,
    pyot_missing,
    pyot_module,
)

__all__ = ["case_unmanaged"]


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
    """Finish a loop the way ``asyncio.run`` does; return when that began.

    resourceloop releases in the executor shutdown pass, or at ``close()`` where the wrapper
    does not fit (3.14+): the latency is measured from the start of the whole ending.
    """
    finishing = now()
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    return finishing


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
        """Run one loop; seconds from the start of its ending to the last release, if released."""
        del released[:]
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            finishing = _close_like_asyncio_run(loop)
        if len(released) == 3 and released[-1] >= finishing:
            return released[-1] - finishing
        return None

    # Timed passes, interleaved: time per loop, and how long its ending took to release.
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
        RL: median(latencies) * 1e6 if latencies else "never while ending",
        FLOOR: "n/a (released by hand before close)",
        PYOT: pyot_value("latency"),
    }
    latency_max: dict[str, Any] = {
        RL: max(latencies) * 1e6 if latencies else "never while ending",
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
            "ending the loop like `asyncio.run` until released, median (max)",
            "us",
            latency_values,
            ratios=False,
            note=(
                f"max {latency_max[RL]:.0f} us; {missed[0]} of {len(latencies) + missed[0]} "
                "loops not released while ending"
                if latencies
                else ""
            ),
        ),
    ]
