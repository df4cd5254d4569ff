"""Case 6, scale: one reaper pass over many live loops, and a hit with many loops parked.

Many live loops are what the per-loop stores and the reaper must scale to; the hit is measured
with the same loop as case 1 (``_measure_hits``), with ``scale_loops`` other loops holding the
resource.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import resourceloop

from ._case_common import (
    Data,
    _floor_acquire,
    _measure_hits,
    _pyot_templates,
    _values,
)
from ._harness import (
    FLOOR,
    PYOT,
    RL,
    Resource,
    Row,
    Settings,
    close_resource,
    make_resource,
    median,
    now,
)

__all__ = ["case_scale"]


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
