"""Churn: thousands of short-lived loops leave no registry entry, no loop object and no memory.

The resources hold their loop strongly (as ``aiohttp.ClientSession`` does), so the
``WeakKeyDictionary`` could never drop an entry by itself: the close hook (or, with the hook
disabled, the reaper) must end every entry. See DESIGN.md, "The trap the design must beat".
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import warnings
import weakref
from collections.abc import Iterator

import pytest

import resourceloop
from resourceloop import ResourceTemplate, reap, stats
from resourceloop._registry import registry
from resourceloop.warnings import ResourceLoopWarning

GROWTH_LIMIT = 64 * 1024  # bytes retained between the warm-up mark and the end
#: Single allocations at least this big are left out of the count: CPython's allocator takes
#: one (a radix-tree node of a few hundred KiB, from ``PyMem_RawCalloc``) the first time the
#: heap reaches a new address range, once per process and with or without resourceloop (plain
#: ``asyncio.run`` churn shows it too). A leak is many small blocks, or a growing container
#: whose objects are counted anyway.
BIG_BLOCK = 64 * 1024


class Holder:
    """A resource that keeps its loop alive, like a ClientSession."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


async def _release(h: Holder) -> None:
    assert asyncio.get_running_loop() is h.loop


def _release_sync(h: Holder) -> None:
    h.loop = None  # type: ignore[assignment]


def _retained() -> int:
    """Bytes traced now in blocks below ``BIG_BLOCK``, after a full collection."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    return sum(trace.size for trace in snapshot.traces if trace.size < BIG_BLOCK)


def _live_loops() -> int:
    # type(), not isinstance(): isinstance reads __class__, which lazy proxies (Django's
    # settings, once imported) answer by raising.
    return sum(1 for o in gc.get_objects() if issubclass(type(o), asyncio.AbstractEventLoop))


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _churn(
    total: int, mark: int, probe_every: int, reap_every: int = 0
) -> tuple[int, int, list[weakref.ReferenceType[asyncio.AbstractEventLoop]]]:
    """Run ``total`` asyncio.run loops; return traced memory at ``mark`` and at the end.

    ``reap_every`` stands in for the reaper thread's interval: the registry's tables grow to
    hold the loops waiting for a pass and keep that size, so an unbounded batch would measure
    the batch, not a leak.
    """
    first = ResourceTemplate(Holder, _release, name="first")
    second = ResourceTemplate(Holder, _release_sync, name="second")

    async def main() -> asyncio.AbstractEventLoop:
        await first.acquire()
        await second.acquire()
        return asyncio.get_running_loop()

    probes: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []
    at_mark = 0
    for i in range(1, total + 1):
        # debug=False: under -X dev (PYTHONDEVMODE=1) asyncio's debug mode would be on, which
        # records a traceback per handle and makes each loop about five times slower (11.5 ms
        # against 2.3 ms measured on 3.11), enough to blow the test's timeout; it checks
        # nothing this test is about.
        loop = asyncio.run(main(), debug=False)
        if i % probe_every == 0:
            probes.append(weakref.ref(loop))
        del loop
        if reap_every and i % reap_every == 0:
            reap()
        if i == mark:
            reap()
            at_mark = _retained()
    reap()
    at_end = _retained()
    assert stats().acquisitions == 2 * total
    return at_mark, at_end, probes


def test_churned_loops_leave_nothing_behind(traced: None) -> None:
    """10,000 asyncio.run loops via the close hook: no entry, no loop, bounded memory."""
    before = _live_loops()
    at_mark, at_end, probes = _churn(10_000, mark=1_000, probe_every=100)
    assert len(registry) == 0
    assert len(registry) == 0
    assert [p for p in probes if p() is not None] == []
    assert _live_loops() == before
    snap = stats()
    assert (snap.loops_tracked, snap.resources_live) == (0, {})
    assert (snap.graceful_releases, snap.forced_releases) == (20_000, 0)
    assert at_end - at_mark < GROWTH_LIMIT, f"retained {at_end - at_mark} bytes"


def test_churned_loops_without_close_hook(traced: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 loops with the hook disabled: the reaper forces them all, and nothing remains."""
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "3600")  # reap() drives every pass
    resourceloop.configure(close_hook=False)
    before = _live_loops()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        at_mark, at_end, probes = _churn(2_000, mark=200, probe_every=100, reap_every=100)
    assert len(registry) == 0
    assert [p for p in probes if p() is not None] == []
    assert _live_loops() == before
    snap = stats()
    assert (snap.loops_tracked, snap.resources_live) == (0, {})
    assert (snap.graceful_releases, snap.forced_releases) == (0, 4_000)
    assert at_end - at_mark < GROWTH_LIMIT, f"retained {at_end - at_mark} bytes"


def test_warnings_shown_under_the_default_action_are_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under ``-W default`` (or ``-X dev``) every loop's warning is shown, none is retained.

    Each message names its loop, so ``warnings.warn`` would keep one registry entry per loop
    in the warning module's ``__warningregistry__``: memory growing with every churned loop.
    """
    import sys

    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "3600")
    resourceloop.configure(close_hook=False)
    template = ResourceTemplate(object, lambda r: None, name="shown")

    async def main() -> None:
        await template.acquire()

    modules = [m for name, m in sys.modules.items() if name.startswith("resourceloop")]

    def remembered() -> list[str]:
        # Only our warnings' entries: an earlier test's garbage, collected while our code
        # runs, may warn (an unclosed socket's ResourceWarning) from one of our frames.
        return [
            m.__name__
            for m in modules
            for key in getattr(m, "__warningregistry__", {})
            if isinstance(key, tuple) and issubclass(key[1], ResourceLoopWarning)
        ]

    gc.collect()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        for _ in range(300):
            asyncio.run(main())
        gc.collect()  # closed or collected, each loop reaches the pass: either way forced
        reap()
    kinds = [w.category.__name__ for w in shown]
    assert kinds.count("UngracefulLoopWarning") == 300
    assert kinds.count("ForcedReleaseWarning") == 300
    assert remembered() == []
