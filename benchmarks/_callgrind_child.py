"""One instruction-count measurement, run under callgrind by ``_instructions``.

Usage::

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=OUT \\
        python -m benchmarks._callgrind_child WORKLOAD IMPL N WARMUP [SIGINT]

``SIGINT`` is ``default`` (the default) or ``ignored``: the handler ``asyncio.run`` finds
(``_set_sigint``). The child builds the workload, runs it ``WARMUP`` times, then ``N`` times,
and calls ``os.getppid()`` at every boundary it wants counted: callgrind is started with
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
import contextlib
import functools
import gc
import importlib
import json
import os
import signal
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._harness import FLOOR, PYOT, RL, PyotTemplates, Resource, close_resource, make_resource

__all__ = ["WORKLOADS", "Mark", "workload"]

BARE = "bare asyncio"
# Issue #21's peers and limit designs (``_instructions.case_peers``).
ATEXIT = "asyncio-atexit"
LOOP_LOCAL = "asyncio-loop-local"
RUNVAR = "anyio RunVar"
LIMIT_EXIT = "limit: async with"
LIMIT_HOOK = "limit: close hook"
#: SIGINT as ``asyncio.run`` finds it: at Python's default handler (a terminal), or ignored (a
#: process started in the background, or a worker whose parent ignores it).
SIGINT_STATES = ("default", "ignored")


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


def _set_sigint(state: str) -> None:
    """Put SIGINT where ``asyncio.run`` is to find it (``SIGINT_STATES``).

    ``"default"`` is what it sees in a terminal. A program started in the background by a
    shell inherits SIGINT ignored, and then ``asyncio.run`` installs and restores no handler
    of its own (``asyncio/runners.py``: only when SIGINT is at ``default_int_handler`` in the
    main thread): on 3.13 that is 23k instructions fewer per lifetime (I1's floor: 382,669
    against 405,826), whatever the workload, so a ratio differs between the two states.
    """
    handler = signal.default_int_handler if state == "default" else signal.SIG_IGN
    if state not in SIGINT_STATES:
        raise ValueError(f"SIGINT state {state!r}: one of {SIGINT_STATES}")
    signal.signal(signal.SIGINT, handler)


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


# -- asyncio.run acquiring 1 or 3 templates, no manager ----------------------------------------
# ``run3`` is I1; ``run1`` and ``run3`` are issue #21's unmanaged lifetimes (``case_peers``).


def _run_rl(count: int, warmup: int, n: int, mark: Mark) -> None:
    templates = _rl_templates(count, f"run{count}")

    async def main() -> None:
        for template in templates:
            await template.acquire()

    _lifetimes(main, warmup, n, mark)


def _run_floor(count: int, warmup: int, n: int, mark: Mark) -> None:
    tables: list[dict[asyncio.AbstractEventLoop, Resource]] = [{} for _ in range(count)]

    async def main() -> None:
        for table in tables:
            await _floor_acquire(table)
        loop = asyncio.get_running_loop()
        for table in tables:
            await table.pop(loop).aclose()

    _lifetimes(main, warmup, n, mark)


def _run_pyot(count: int, warmup: int, n: int, mark: Mark) -> None:
    # Released by hand before the loop closes: left to Pyot's purge, the churn deadlocks on
    # the 32nd acquisition (see _pyot_child).
    pyot = PyotTemplates(count)

    async def main() -> None:
        for template in pyot.templates:
            await template.acquire()
        for template in pyot.templates:
            await template.release()

    _lifetimes(main, warmup, n, mark)


Acquire = Callable[[], Awaitable[Resource]]


def _run_acquiring(acquirers: list[Acquire], warmup: int, n: int, mark: Mark) -> None:
    """Lifetimes that call each acquirer once and leave the releases to the loop's end."""

    async def main() -> None:
        for acquire in acquirers:
            await acquire()

    _lifetimes(main, warmup, n, mark)


def _atexit_acquirers(count: int) -> list[Acquire]:
    """asyncio-atexit 1.0.1 as its users write it: a dict of each loop's resources, and one
    ``asyncio_atexit.register`` per loop (at its first acquisition) of a callback that closes
    them all. The library runs the callbacks in ``loop.close()``, on the loop."""
    asyncio_atexit = importlib.import_module("asyncio_atexit")
    held: dict[asyncio.AbstractEventLoop, dict[int, Resource]] = {}

    async def release(loop: asyncio.AbstractEventLoop) -> None:
        for resource in held.pop(loop).values():
            await resource.aclose()

    def acquirer(key: int) -> Acquire:
        async def acquire() -> Resource:
            loop = asyncio.get_running_loop()
            mine = held.get(loop)
            if mine is None:
                mine = held[loop] = {}
                asyncio_atexit.register(functools.partial(release, loop))
            resource = mine.get(key)
            if resource is None:
                resource = mine[key] = make_resource()
            return resource

        return acquire

    return [acquirer(key) for key in range(count)]


def _loop_local_sessions(count: int) -> list[Callable[[], Any]]:
    """asyncio-loop-local 0.0.4's ``singleton`` factories, one per resource: each call gives
    the running loop's one async context manager (``contextlib.aclosing`` of the resource),
    which ``await enter_once(factory())`` enters once per loop and exits at ``loop.close()``
    (the README's ``enter_once`` + ``singleton``)."""
    loop_local = importlib.import_module("asyncio_loop_local")

    def factory() -> Callable[[], Any]:
        def session() -> contextlib.aclosing[Resource]:
            return contextlib.aclosing(make_resource())

        return loop_local.singleton(session)  # type: ignore[no-any-return]

    return [factory() for _ in range(count)]


def _loop_local_acquirers(count: int) -> list[Acquire]:
    enter_once = importlib.import_module("asyncio_loop_local").enter_once

    def acquirer(session: Callable[[], Any]) -> Acquire:
        return lambda: enter_once(session())

    return [acquirer(session) for session in _loop_local_sessions(count)]


def _hook_acquirers(count: int) -> list[Acquire]:
    """Limit design (b), hand-written minimal: what a close hook costs and no more.

    At a loop's first acquisition: its dict of resources, keyed by ``id(loop)`` so that it
    does not keep the loop alive; one weak reference to the loop (whose callback drops the
    entry of a loop collected unclosed, where a real design would release by force); and
    ``loop.close`` wrapped on the instance to run the releases on the loop, then close it.
    """
    held: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], dict[int, Resource]]] = {}

    async def release(key: int) -> None:
        for resource in held.pop(key)[1].values():
            await resource.aclose()

    def track(loop: asyncio.AbstractEventLoop) -> dict[int, Resource]:
        key = id(loop)
        mine: dict[int, Resource] = {}
        held[key] = (weakref.ref(loop, lambda _: held.pop(key, None)), mine)
        inner = loop.close

        def close() -> None:
            if key in held and not loop.is_closed():
                loop.run_until_complete(release(key))
            inner()

        loop.close = close  # type: ignore[method-assign]
        return mine

    def acquirer(index: int) -> Acquire:
        async def acquire() -> Resource:
            loop = asyncio.get_running_loop()
            entry = held.get(id(loop))
            mine = track(loop) if entry is None else entry[1]
            resource = mine.get(index)
            if resource is None:
                resource = mine[index] = make_resource()
            return resource

        return acquire

    return [acquirer(index) for index in range(count)]


def _acquiring(make: Callable[[int], list[Acquire]], count: int) -> Workload:
    def run(warmup: int, n: int, mark: Mark) -> None:
        _run_acquiring(make(count), warmup, n, mark)

    return run


for _count in (1, 3):
    workload(f"run{_count}", RL)(functools.partial(_run_rl, _count))
    workload(f"run{_count}", FLOOR)(functools.partial(_run_floor, _count))
    workload(f"run{_count}", PYOT)(functools.partial(_run_pyot, _count))
    workload(f"run{_count}", ATEXIT)(_acquiring(_atexit_acquirers, _count))
    workload(f"run{_count}", LOOP_LOCAL)(_acquiring(_loop_local_acquirers, _count))
    workload(f"run{_count}", LIMIT_HOOK)(_acquiring(_hook_acquirers, _count))


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


class _ExitScope:
    """Limit design (a), hand-written minimal: an ``async with`` that releases in its exit.

    Entering makes the running loop's dict of resources, acquisitions get or create in it,
    and the exit closes what is there.
    """

    def __init__(self, held: dict[asyncio.AbstractEventLoop, dict[int, Resource]]) -> None:
        self.held = held

    async def __aenter__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.held[self.loop] = {}

    async def __aexit__(self, *exc_info: object) -> None:
        for resource in self.held.pop(self.loop).values():
            await resource.aclose()


async def _scope_acquire(held: dict[asyncio.AbstractEventLoop, dict[int, Resource]]) -> Resource:
    """Limit (a)'s acquisition: get or create in the dict its ``async with`` made."""
    mine = held[asyncio.get_running_loop()]
    resource = mine.get(0)
    if resource is None:
        resource = mine[0] = make_resource()
    return resource


@workload("managed", LIMIT_EXIT)
def _managed_limit(warmup: int, n: int, mark: Mark) -> None:
    held: dict[asyncio.AbstractEventLoop, dict[int, Resource]] = {}

    async def main() -> None:
        async with _ExitScope(held):
            await _scope_acquire(held)

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


async def _awaited_hits(acquire: Acquire, warmup: int, n: int, mark: Mark) -> None:
    """``await acquire()`` on a loop that holds the resource: the peers' side of ``_hits``."""
    first = await acquire()
    for _ in range(warmup):
        await acquire()
    _settle()
    mark("setup")
    for _ in range(n):
        await acquire()
    mark("op")
    assert await acquire() is first


@workload("hit", ATEXIT)
def _hit_atexit(warmup: int, n: int, mark: Mark) -> None:
    (acquire,) = _atexit_acquirers(1)
    asyncio.run(_awaited_hits(acquire, warmup, n, mark))


@workload("hit", LOOP_LOCAL)
def _hit_loop_local(warmup: int, n: int, mark: Mark) -> None:
    # Written out as its README does (no lambda between): ``await enter_once(session())``.
    enter_once = importlib.import_module("asyncio_loop_local").enter_once
    (session,) = _loop_local_sessions(1)

    async def main() -> None:
        first = await enter_once(session())
        for _ in range(warmup):
            await enter_once(session())
        _settle()
        mark("setup")
        for _ in range(n):
            await enter_once(session())
        mark("op")
        assert await enter_once(session()) is first

    asyncio.run(main())


@workload("hit", RUNVAR)
def _hit_runvar(warmup: int, n: int, mark: Mark) -> None:
    # anyio's RunVar holds a value per event loop and releases nothing when the loop ends:
    # only the hit is its job. Get-or-create in an ``async def``, the shape of the floor's.
    var = importlib.import_module("anyio.lowlevel").RunVar("cg-hit")

    async def acquire() -> Resource:
        resource: Resource | None = var.get(None)
        if resource is None:
            resource = make_resource()
            var.set(resource)
        return resource

    asyncio.run(_awaited_hits(acquire, warmup, n, mark))


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
    phases = _Phases(mark)
    at = phases.at

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
        _mark_close(at)

    phases.run(main, warmup, n)


def _mark_close(at: Callable[[str], None]) -> None:
    """Wrap the running loop's ``close`` so that asyncio's shutdown and the close are phases."""
    loop = asyncio.get_running_loop()
    inner = loop.close

    def close() -> None:
        at("asyncio shutdown")
        inner()
        at("loop.close()")

    loop.close = close  # type: ignore[method-assign]


class _Phases:
    """Marks between the phases of lifetimes, once the warm-up is over."""

    def __init__(self, mark: Mark) -> None:
        self.mark = mark
        self.counting = False

    def at(self, label: str) -> None:
        if self.counting:
            self.mark(label)

    def run(self, main: Main, warmup: int, n: int) -> None:
        for _ in range(warmup):
            asyncio.run(main())
        _settle()
        self.mark("setup")
        self.counting = True
        for _ in range(n):
            asyncio.run(main())
            self.at("loop end")


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


# -- phases of one managed cycle (issue #21: where the managed cycle's instructions go) --------

#: The parts of one managed cycle, in order, each named by where it ends.
MANAGED_PHASES = (
    "loop start",
    "manager entry",  # resourceloop's manager marks the loop; the floor has none
    "acquisition",
    "manager exit",  # the release: the manager's exit, the floor's by hand
    "asyncio shutdown",
    "loop.close()",
    "loop end",
)


def _managed_phased(
    scope: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    acquire: Acquire,
    warmup: int,
    n: int,
    mark: Mark,
    *,
    releases: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Managed cycles like ``managed``, with a boundary between every two ``MANAGED_PHASES``.

    The floor has no manager: its scope is ``contextlib.nullcontext()`` and its releases by
    hand run at the end of the block, in the "manager exit" phase.
    """
    phases = _Phases(mark)
    at = phases.at

    async def main() -> None:
        at("loop start")
        async with scope():
            at("manager entry")
            await acquire()
            at("acquisition")
            if releases is not None:
                await releases()
        at("manager exit")
        _mark_close(at)

    phases.run(main, warmup, n)


@workload("managed_phases", RL)
def _managed_phases_rl(warmup: int, n: int, mark: Mark) -> None:
    import resourceloop

    (template,) = _rl_templates(1, "managed_phases")
    _managed_phased(resourceloop.resource_manager, template.acquire, warmup, n, mark)


@workload("managed_phases", FLOOR)
def _managed_phases_floor(warmup: int, n: int, mark: Mark) -> None:
    table: dict[asyncio.AbstractEventLoop, Resource] = {}

    async def releases() -> None:
        await table.pop(asyncio.get_running_loop()).aclose()

    _managed_phased(
        contextlib.nullcontext, lambda: _floor_acquire(table), warmup, n, mark, releases=releases
    )


@workload("managed_phases", LIMIT_EXIT)
def _managed_phases_limit(warmup: int, n: int, mark: Mark) -> None:
    held: dict[asyncio.AbstractEventLoop, dict[int, Resource]] = {}
    _managed_phased(lambda: _ExitScope(held), lambda: _scope_acquire(held), warmup, n, mark)


def main(argv: list[str]) -> int:
    name, impl, n, warmup = argv[0], argv[1], int(argv[2]), int(argv[3])
    _set_sigint(argv[4] if len(argv) > 4 else "default")
    mark = Mark()
    WORKLOADS[name][impl](warmup, n, mark)
    print(json.dumps({"labels": mark.labels, "n": n}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
