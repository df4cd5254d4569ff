"""One instruction-count measurement, run under callgrind by ``_instructions``.

Usage::

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=OUT \\
        python -m benchmarks._callgrind_child WORKLOAD IMPL N WARMUP

The child builds the workload, runs it ``WARMUP`` times, then ``N`` times, and calls
``os.getppid()`` at every boundary it wants counted: callgrind is started with
``--dump-before=getppid``, so each call writes the instructions executed since the previous
boundary to a file of its own (``OUT.1``, ``OUT.2``, ...; ``OUT`` is what follows the last one).
Interpreter start-up, imports, set-up and the warm-up land in the first file, the process exit
in the last, and neither is counted: no run of ``N`` against ``2N`` is needed, and no
``CALLGRIND_START_INSTRUMENTATION`` (which would need a C extension). Nothing else in these
workloads calls ``getppid``; the parent checks that the number of files matches the number of
boundaries this child reports, so a stray call would be caught rather than miscounted.

``PYTHONHASHSEED=0`` and ``RESOURCELOOP_REAP_INTERVAL=3600`` (set by the parent, see
``_instructions``) and ``_settle()`` just before the counted part make two runs of
resourceloop or the floor execute the very same instructions. ``_settle`` collects, then
freezes what is left (``gc.freeze()``): the collector's passes in the counted part then scan
the workload's own objects only. Without it they also scanned whatever the imports left on the
heap, and when the oldest generation's pass came depended on how much that was: one more
module-level list in this file moved the floor of I1 on 3.13 from 383k to 407k instructions
per lifetime (with it, 50,000 extra objects move it by 0.01%).

The last line on stdout is a JSON object: ``{"labels": [...], "n": N}``, one label per
boundary, naming the part of the work that *ended* there (``"setup"`` for the first; a
workload's per-operation part is ``"op"``, a phase breakdown uses phase names).

Workloads form a registry (``WORKLOADS``: name, then implementation); add one with
``@workload(name, impl)``. Each is a function ``(warmup, n, mark) -> None``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ._harness import FLOOR, PYOT, RL, PyotTemplates, Resource, close_resource, make_resource

__all__ = ["WORKLOADS", "Mark", "workload"]

BARE = "bare asyncio"


class Mark:
    """Boundaries of counted work: each call is one callgrind dump, labelled."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def __call__(self, label: str, _boundary: Callable[[], int] = os.getppid) -> None:
        self.labels.append(label)
        _boundary()


Workload = Callable[[int, int, Mark], None]
WORKLOADS: dict[str, dict[str, Workload]] = {}


def workload(name: str, impl: str) -> Callable[[Workload], Workload]:
    """Register ``fn`` as implementation ``impl`` of workload ``name``."""

    def register(fn: Workload) -> Workload:
        WORKLOADS.setdefault(name, {})[impl] = fn
        return fn

    return register


Main = Callable[[], Coroutine[Any, Any, None]]


def _as_in_a_terminal() -> None:
    """Let ``asyncio.run`` see the SIGINT handler it sees in a terminal.

    A program started in the background by a shell inherits SIGINT ignored, and then
    ``asyncio.run`` installs and restores no handler of its own: on 3.13 that is 23k
    instructions fewer per lifetime (I1's floor: 382,669 against 405,826), whatever the
    workload.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _settle() -> None:
    """The same collector state before every counted part, whatever the imports left (above)."""
    gc.collect()
    gc.freeze()


def _lifetimes(main: Main, warmup: int, n: int, mark: Mark) -> None:
    """``asyncio.run(main())``, ``warmup`` times uncounted, then ``n`` times as one part."""
    for _ in range(warmup):
        asyncio.run(main())
    _settle()
    mark("setup")
    for _ in range(n):
        asyncio.run(main())
    mark("op")


async def _floor_acquire(table: dict[asyncio.AbstractEventLoop, Resource]) -> Resource:
    """The hand-written per-loop dict (the same as ``_case_common._floor_acquire``)."""
    loop = asyncio.get_running_loop()
    resource = table.get(loop)
    if resource is None:
        resource = table[loop] = make_resource()
    return resource


def _rl_templates(count: int, what: str) -> list[Any]:
    import resourceloop

    return [
        resourceloop.ResourceTemplate(make_resource, close_resource, name=f"cg-{what}-{i}")
        for i in range(count)
    ]


# -- asyncio.run acquiring 3 templates, no manager ---------------------------------------------


@workload("run3", RL)
def _run3_rl(warmup: int, n: int, mark: Mark) -> None:
    templates = _rl_templates(3, "run3")

    async def main() -> None:
        for template in templates:
            await template.acquire()

    _lifetimes(main, warmup, n, mark)


@workload("run3", FLOOR)
def _run3_floor(warmup: int, n: int, mark: Mark) -> None:
    tables: list[dict[asyncio.AbstractEventLoop, Resource]] = [{}, {}, {}]

    async def main() -> None:
        for table in tables:
            await _floor_acquire(table)
        loop = asyncio.get_running_loop()
        for table in tables:
            await table.pop(loop).aclose()

    _lifetimes(main, warmup, n, mark)


@workload("run3", PYOT)
def _run3_pyot(warmup: int, n: int, mark: Mark) -> None:
    # Released by hand before the loop closes: left to Pyot's purge, the churn deadlocks on
    # the 32nd acquisition (see _pyot_child).
    pyot = PyotTemplates(3)

    async def main() -> None:
        for template in pyot.templates:
            await template.acquire()
        for template in pyot.templates:
            await template.release()

    _lifetimes(main, warmup, n, mark)


@workload("run3", BARE)
def _run3_bare(warmup: int, n: int, mark: Mark) -> None:
    async def main() -> None:
        pass

    _lifetimes(main, warmup, n, mark)


# -- managed cycle, 1 template -----------------------------------------------------------------


@workload("managed", RL)
def _managed_rl(warmup: int, n: int, mark: Mark) -> None:
    import resourceloop

    (template,) = _rl_templates(1, "managed")

    async def main() -> None:
        async with resourceloop.resource_manager():
            await template.acquire()

    _lifetimes(main, warmup, n, mark)


@workload("managed", FLOOR)
def _managed_floor(warmup: int, n: int, mark: Mark) -> None:
    table: dict[asyncio.AbstractEventLoop, Resource] = {}

    async def main() -> None:
        await _floor_acquire(table)
        await table.pop(asyncio.get_running_loop()).aclose()

    _lifetimes(main, warmup, n, mark)


@workload("managed", PYOT)
def _managed_pyot(warmup: int, n: int, mark: Mark) -> None:
    pyot = PyotTemplates(1)
    (template,) = pyot.templates
    manager = pyot.module.resource_manager

    async def main() -> None:
        async with manager():
            await template.acquire()

    _lifetimes(main, warmup, n, mark)


# -- hit: the resource is already held by the running loop -------------------------------------


async def _hits(template: Any, warmup: int, n: int, mark: Mark) -> None:
    """``await template.acquire()`` (a method call, as users write it) on a loop that holds
    the resource."""
    first = await template.acquire()
    for _ in range(warmup):
        await template.acquire()
    _settle()
    mark("setup")
    for _ in range(n):
        await template.acquire()
    mark("op")
    assert await template.acquire() is first


@workload("hit", RL)
def _hit_rl(warmup: int, n: int, mark: Mark) -> None:
    (template,) = _rl_templates(1, "hit")
    asyncio.run(_hits(template, warmup, n, mark))


@workload("hit", FLOOR)
def _hit_floor(warmup: int, n: int, mark: Mark) -> None:
    table: dict[asyncio.AbstractEventLoop, Resource] = {}

    async def floor_get() -> Resource:
        return table[asyncio.get_running_loop()]

    async def main() -> None:
        table[asyncio.get_running_loop()] = make_resource()
        first = await floor_get()
        for _ in range(warmup):
            await floor_get()
        _settle()
        mark("setup")
        for _ in range(n):
            await floor_get()  # as in case 1: an ``async def`` returning the dict's entry
        mark("op")
        assert await floor_get() is first
        table.clear()

    asyncio.run(main())


@workload("hit", PYOT)
def _hit_pyot(warmup: int, n: int, mark: Mark) -> None:
    (template,) = PyotTemplates(1).templates

    async def main() -> None:
        await _hits(template, warmup, n, mark)
        await template.release()

    asyncio.run(main())


# -- phases of one asyncio.run lifetime that acquires templates --------------------------------

#: The parts of one lifetime, in order, each named by where it ends.
PHASES = (
    "loop start",  # asyncio.run creates the loop and the main task; main begins
    "1st acquisition",  # the first acquire on the loop (resourceloop tracks the loop here)
    "2nd and 3rd acquisitions",
    "releases by hand",  # the floor only; resourceloop's part is empty
    "asyncio shutdown",  # main returns; asyncio.run cancels tasks, shuts down asyncgens/executor
    "loop.close()",  # resourceloop's close hook releases here and untracks the loop
    "loop end",  # asyncio.run returns
)


def _phased(
    acquires: list[Callable[[], Any]],
    releases: Callable[[], Coroutine[Any, Any, None]] | None,
    warmup: int,
    n: int,
    mark: Mark,
) -> None:
    """Lifetimes like ``run3``, with a boundary between every two phases of ``PHASES``.

    ``loop.close`` is wrapped on the instance, over whatever is there (resourceloop's close
    hook, or the class's method), so that its cost is a part of its own; the wrapper adds a
    call or two of Python to each boundary, the same for every implementation.
    """
    counting = [False]

    def at(label: str) -> None:
        if counting[0]:
            mark(label)

    async def main() -> None:
        at("loop start")
        await acquires[0]()
        at("1st acquisition")
        for acquire in acquires[1:]:
            await acquire()
        at("2nd and 3rd acquisitions")
        if releases is not None:
            await releases()
        at("releases by hand")
        loop = asyncio.get_running_loop()
        inner = loop.close

        def close() -> None:
            at("asyncio shutdown")
            inner()
            at("loop.close()")

        loop.close = close  # type: ignore[method-assign]

    for _ in range(warmup):
        asyncio.run(main())
    _settle()
    mark("setup")
    counting[0] = True
    for _ in range(n):
        asyncio.run(main())
        at("loop end")


@workload("phases", RL)
def _phases_rl(warmup: int, n: int, mark: Mark) -> None:
    _phased([t.acquire for t in _rl_templates(3, "phases")], None, warmup, n, mark)


@workload("phases1", RL)
def _phases1_rl(warmup: int, n: int, mark: Mark) -> None:
    _phased([t.acquire for t in _rl_templates(1, "phases1")], None, warmup, n, mark)


@workload("phases", FLOOR)
def _phases_floor(warmup: int, n: int, mark: Mark) -> None:
    tables: list[dict[asyncio.AbstractEventLoop, Resource]] = [{}, {}, {}]

    def getter(table: dict[asyncio.AbstractEventLoop, Resource]) -> Callable[[], Any]:
        return lambda: _floor_acquire(table)

    async def releases() -> None:
        loop = asyncio.get_running_loop()
        for table in tables:
            await table.pop(loop).aclose()

    _phased([getter(t) for t in tables], releases, warmup, n, mark)


@workload("phases", BARE)
def _phases_bare(warmup: int, n: int, mark: Mark) -> None:
    async def nothing() -> None:
        pass

    _phased([nothing, nothing, nothing], None, warmup, n, mark)


def main(argv: list[str]) -> int:
    name, impl, n, warmup = argv[0], argv[1], int(argv[2]), int(argv[3])
    _as_in_a_terminal()
    mark = Mark()
    WORKLOADS[name][impl](warmup, n, mark)
    print(json.dumps({"labels": mark.labels, "n": n}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
