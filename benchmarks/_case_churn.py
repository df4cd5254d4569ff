"""Case 4, threaded churn: loops made and closed in ``T`` threads at once, 3 templates each.

Its own module because it runs threads (a barrier starts them together) and because case 5
reuses its two per-loop mains (``_three_resource_mains``): the same three templates, used
and closed the same way, with and without resourceloop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import resourceloop

from ._case_common import (
    Data,
    _floor_acquire,
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
    make_resource,
    median,
    now,
    pyot_missing,
    pyot_module,
)

__all__ = ["WHY_CHURN", "_three_resource_mains", "case_churn"]


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
    "releases them in `asyncio.run`'s last pass (its executor shutdown, in a task on the "
    "running loop: sniffio and `asyncio.timeout` need one), and it tracks each new loop on "
    "first acquisition (its state, weakref callback, store, close wrapper); per loop "
    "lifetime on 3.11 that is about +60k instructions at the first acquisition and +60k for "
    "the three releases over the floor's 565k (see the instruction phases). More threads "
    "add contention on the registry lock and the GIL, and time that callgrind does not count"
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
