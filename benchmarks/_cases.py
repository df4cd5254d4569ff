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
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import resourceloop

from ._case_celery import case_celery
from ._case_celery_soak import case_celery_soak
from ._case_churn import case_churn
from ._case_clients import case_clients
from ._case_common import (
    Data,
    _default_executor,
    _floor_acquire,
    _live_templates,
    _measure_hits,
    _pyot_templates,
    _values,
)
from ._case_django import case_django
from ._case_scale import case_scale
from ._case_tracked import case_tracked
from ._case_unmanaged import case_unmanaged
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
    now,
    pyot_missing,
)
from ._portal import case_portal

__all__ = ["CASES"]


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

#: Where the time goes when case 3's target does not hold (callgrind marks, 2026-12-02).
WHY_MANAGED = (
    "the floor awaits one dict lookup and one `aclose()` inline; resourceloop, for each new loop, "
    "tracks it (its state and weak reference under the lock, the store on the instance, the "
    "close wrapper), acquires every non-lazy template on manager entry, releases on exit "
    "under `release_timeout` (a timer only if a release suspends), and untracks the loop at "
    "`loop.close()`; see I2 for the instructions of each step. The <= 0.25x Pyot half of "
    "the target holds"
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


CASES: dict[str, Callable[[Settings, Data], list[Row]]] = {
    "1": case_hit,
    "2": case_first,
    "3": case_managed,
    "4": case_churn,
    "5": case_unmanaged,
    "6": case_scale,
    "7": case_tracked,  # issue #21: the reaper's pass, reap() and memory per tracked loop
    "portal": case_portal,  # issue #13; its own table: see _portal
    "celery": case_celery,  # issue #18; its own table: see _case_celery
    "celery_soak": case_celery_soak,  # issue #18's "Done means": see _case_celery_soak
    "django": case_django,  # issue #18; its own table: see _case_django
    "clients": case_clients,  # issue #19; its own table: see _case_clients
}
