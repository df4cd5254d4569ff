"""Case 7, tracked loops (issue #21): what each tracked loop costs the reaper, and in memory.

Two populations of tracked loops, each holding one resource of one template: live loops, each
parked in a thread of its own (running, blocked on a barrier), and idle loops left behind in
this thread (run once, not closed, still referenced: each newer one supersedes the older ones,
so the reaper's passes check whether anything else still refers to them). For each population
and each count (``tracked_counts``):

- one periodic reaper pass (what the reaper thread runs every ``reap_interval``, called here
  in-line so that it can be timed: ``_runtime.reaper.reap_once(thorough=False)``, as the tests
  do), per tracked loop; the floor is a scan of a per-loop dict for closed loops, per loop;
- one ``resourceloop.reap()`` (the thorough pass).

Then memory, with ``tracemalloc``, on ``tracked_memory_loops`` idle loops: the bytes allocated
while each loop's first acquisition tracks it, per loop, in all and under resourceloop's own
frames (the floor: a dict entry and the resource), and what resourceloop's frames still hold
once the loops are closed and one ``reap()`` ran.

Wall time: a pass over thousands of loops is too long for callgrind. The reaper thread's own
passes are held off (``reap_interval`` of an hour) while this runs, so that none lands in a
timed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import resourceloop
from resourceloop import _runtime

from ._case_common import Data, _floor_acquire
from ._case_unmanaged import _PACKAGE_DIR, _TRACE_DEPTH, _traced
from ._harness import (
    FLOOR,
    RL,
    Resource,
    Row,
    Settings,
    close_resource,
    interleave,
    make_resource,
    median,
    now,
)

__all__ = ["case_tracked"]

#: Where the cost goes when a target of this case does not hold (3.11, 2026-12-07: cProfile
#: of one pass over 1,000 idle loops, tracemalloc by line over 500).
WHY_PASS = (
    "a pass costs what changed (`_reaper`), but `reap()` and every 16th pass also look at each "
    "tracked loop once (`is_closed()`, for a loop closed behind its close hook), and a loop "
    "left behind that the program keeps is checked for references (`_reach`: a walk of the "
    "objects the loop holds, about 45-65 us a loop) at its 1st, 2nd, 4th, 8th... pass, and by "
    "`reap()` whenever its reference counts changed"
)
WHY_MEMORY = (
    "each tracked loop gets its state (`_state`, about 208 B), its `pending` dict (224 B), "
    "the store and the hot dict stored on the loop (about 320 B), the `close` and "
    "`shutdown_default_executor` wrappers with their weak references (`_closehook`, about "
    "480 B), its guard lock (88 B) and weak reference (80 B); after the loops close, what "
    "stays under resourceloop's frames is the reaper's own bookkeeping, the same whatever the "
    "number of loops"
)

Table = dict[asyncio.AbstractEventLoop, Resource]
_PASSES = 5  # timed single passes per round: the median is over single passes


@contextlib.contextmanager
def _live(
    n: int, template: resourceloop.ResourceTemplate[Resource], table: Table
) -> Iterator[None]:
    """``n`` running loops, each in a thread of its own, each holding both resources."""
    parked = threading.Barrier(n + 1)
    go = threading.Event()
    errors: list[BaseException] = []

    async def park() -> None:
        await template.acquire()
        await _floor_acquire(table)
        parked.wait()  # blocks this loop's thread: the loop stays "running"
        go.wait()
        del table[asyncio.get_running_loop()]

    def worker() -> None:
        try:
            asyncio.run(park())
        except BaseException as exc:
            errors.append(exc)
            parked.abort()

    old_stack = threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    try:
        for thread in threads:
            thread.start()
        parked.wait(timeout=600)
    finally:
        threading.stack_size(old_stack)
    try:
        yield
    finally:
        go.set()
        for thread in threads:
            thread.join(timeout=60)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _idle(
    n: int, template: resourceloop.ResourceTemplate[Resource], table: Table
) -> Iterator[None]:
    """``n`` idle loops of this thread, run once to acquire both resources, left unclosed."""
    loops = [asyncio.new_event_loop() for _ in range(n)]

    async def acquire() -> None:
        await template.acquire()
        await _floor_acquire(table)

    try:
        for loop in loops:
            loop.run_until_complete(acquire())
        yield
    finally:
        while loops:
            loop = loops.pop()
            table.pop(loop, None)
            loop.close()  # the close hook releases resourceloop's resource here
        del loop
        resourceloop.reap()


def _passes(table: Table) -> dict[str, Callable[[], float]]:
    """Nanoseconds of one pass, resourceloop's periodic one and the floor's scan."""

    def rl_pass() -> float:
        start = now()
        _runtime.reaper.reap_once(thorough=False)
        return (now() - start) * 1e9

    def floor_pass() -> float:
        start = now()
        [loop for loop in list(table) if loop.is_closed()]
        return (now() - start) * 1e9

    return {RL: rl_pass, FLOOR: floor_pass}


def _reap_ms() -> float:
    start = now()
    resourceloop.reap()
    return (now() - start) * 1e3


def _memory(n: int, template: resourceloop.ResourceTemplate[Resource]) -> dict[str, float]:
    """Bytes per loop allocated by its first acquisition, and resourceloop's left after close.

    The loops are made and run once before tracing starts, so the traced part is the
    acquisition alone: the floor's dict entry and resource, or resourceloop's tracking and
    resource.
    """
    ours = [tracemalloc.Filter(True, f"{_PACKAGE_DIR}/*", all_frames=True)]
    table: Table = {}

    async def nothing() -> None:
        pass

    def traced(
        acquire: Callable[[], Awaitable[Resource]],
    ) -> tuple[list[asyncio.AbstractEventLoop], int, int]:
        loops = [asyncio.new_event_loop() for _ in range(n)]
        for loop in loops:
            loop.run_until_complete(nothing())
        gc.collect()
        tracemalloc.start(_TRACE_DEPTH)
        for loop in loops:
            loop.run_until_complete(acquire())
        gc.collect()
        return loops, _traced([]), _traced(ours)

    def close(loops: list[asyncio.AbstractEventLoop]) -> None:
        # In a function of its own: no name here may keep the last loop alive.
        for loop in loops:
            table.pop(loop, None)
            loop.close()
        loops.clear()

    try:
        loops, rl_all, rl_ours = traced(template.acquire)
        close(loops)
        del loops
        resourceloop.reap()
        gc.collect()
        rl_left = float(_traced(ours))
        tracemalloc.stop()
        loops, floor_all, _ = traced(lambda: _floor_acquire(table))
        close(loops)
    finally:
        tracemalloc.stop()
    return {
        "rl_all": rl_all / n,
        "rl_ours": rl_ours / n,
        "rl_left_after_close": rl_left,
        "floor_all": floor_all / n,
    }


def case_tracked(settings: Settings, data: Data) -> list[Row]:
    template = resourceloop.ResourceTemplate(make_resource, close_resource, name="bench-tracked")
    interval = resourceloop.configure().reap_interval
    resourceloop.configure(reap_interval=3600.0)
    rows: list[Row] = []
    samples: dict[str, object] = {}
    try:
        for population, hold in (
            ("live loops parked in threads", _live),
            ("idle loops left behind", _idle),
        ):
            for n in settings.tracked_counts:
                table: Table = {}
                with hold(n, template, table):
                    tracked = resourceloop.stats().loops_tracked
                    start = now()  # the first pass takes in the new loops: O(loops changed)
                    _runtime.reaper.reap_once(thorough=False)
                    first_ms = (now() - start) * 1e3
                    passes = interleave(_passes(table), settings.scale_rounds * _PASSES)
                    reaps = [_reap_ms() for _ in range(settings.scale_rounds)]
                samples[f"{population}, {n}"] = {
                    "tracked": tracked,
                    "first_pass_ms": first_ms,
                    "pass_ns": passes,
                    "reap_ms": reaps,
                }
                per_loop: dict[str, Any] = {name: median(s) / tracked for name, s in passes.items()}
                rows.append(
                    Row(
                        "7. tracked loops",
                        f"one reaper pass, per tracked loop: {n:,} {population}",
                        "ns",
                        per_loop,
                        target="<= 0.5 us, 500 ns (#21)",
                        holds=per_loop[RL] <= 500,
                        note=f"{tracked:,} tracked; resourceloop: the thread's periodic pass "
                        "(`reap_once(thorough=False)`), median of single passes after the "
                        f"first, which took in the {n:,} new loops in {first_ms:.1f} ms "
                        "(O(loops that changed)); a loop left behind that the program keeps "
                        "is checked again at its 2nd, 4th, 8th... pass; floor: a dict scan "
                        "for closed loops",
                        why=WHY_PASS,
                    )
                )
                rows.append(
                    Row(
                        "7. tracked loops",
                        f"`resourceloop.reap()`: {n:,} {population}",
                        "ms",
                        {RL: median(reaps)},
                        target="< 5 ms at 5,000 (#21)",
                        holds=median(reaps) < 5.0,
                        ratios=False,
                        note=f"{tracked:,} tracked",
                        why=WHY_PASS,
                    )
                )
        memory = _memory(settings.tracked_memory_loops, template)
    finally:
        resourceloop.configure(reap_interval=interval)
    samples["memory"] = memory
    data["tracked"] = samples
    n = settings.tracked_memory_loops
    rows += [
        Row(
            "7. tracked loops",
            f"memory per tracked loop, in all (tracemalloc, {n:,} idle loops)",
            "B",
            {RL: memory["rl_all"], FLOOR: memory["floor_all"]},
            target="<= 1 KB (#21)",
            holds=memory["rl_all"] <= 1024,
            note="bytes allocated by each loop's first acquisition, resource included",
            why=WHY_MEMORY,
        ),
        Row(
            "7. tracked loops",
            "memory per tracked loop, under resourceloop's frames",
            "B",
            {RL: memory["rl_ours"]},
            target="<= 1 KB (#21)",
            holds=memory["rl_ours"] <= 1024,
            ratios=False,
            why=WHY_MEMORY,
        ),
        Row(
            "7. tracked loops",
            f"after closing the {n:,} loops and one `reap()`, under resourceloop's frames",
            "B",
            {RL: memory["rl_left_after_close"]},
            target="0 bytes (#21)",
            holds=memory["rl_left_after_close"] == 0,
            ratios=False,
            note="allocated while the loops were tracked and still held",
            why=WHY_MEMORY,
        ),
    ]
    return rows
