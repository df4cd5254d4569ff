"""Tests for ``resourceloop._reaper``: loops closed without the hook, abandoned, left behind
by a thread that moved on, or collected.

``resourceloop.reap()`` drives one pass synchronously; one test lets the real reaper thread
find a closed loop by itself, waiting on an event with a timeout that only matters if broken.
A pass ends a loop left behind without a collection when nothing but resourceloop refers to
it (only ``reap()`` takes a young collection, and only for a loop that still looked
referenced): tests that drop a loop collect themselves only where the claim is about a
collected loop.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import threading
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, _reaper, _runtime, reap, resource_manager, stats
from resourceloop._registry import registry
from resourceloop._state import READY_ATTR
from resourceloop.warnings import (
    ForcedReleaseWarning,
    ResourceLoopWarning,
    UnclosedLoopWarning,
    UngracefulLoopWarning,
)
from tests._fakes import Recorder, Res
from tests._loops import abandon, needs_uvloop
from tests._loops import is_uvloop as _is_uvloop
from tests._loops import new_uvloop as _new_uvloop
from tests._warnings import record_text
from tests.conftest import exact_refcounts

FACTORIES = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(_new_uvloop, id="uvloop", marks=needs_uvloop),
]


pytestmark = pytest.mark.usefixtures("slow_reaper")  # reap() drives the passes here


def _collect() -> None:
    """Collect (three times), tolerating one known piece of asyncio noise.

    When the cyclic collector finalizes an unclosed default loop's self-pipe socket before the
    loop, asyncio's own ``BaseEventLoop.__del__`` fails with "Invalid file descriptor: -1"
    while closing it, with or without resourceloop. Only that is let through; anything else
    raised in a finalizer still reaches pytest.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, ValueError) and "Invalid file descriptor" in str(exc):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        for _ in range(3):
            gc.collect()
    finally:
        sys.unraisablehook = previous


@pytest.fixture
def quiet_unclosed() -> Iterator[None]:
    """Let asyncio's own "unclosed event loop/socket" warnings of dropped loops pass.

    Any resourceloop warning emitted meanwhile still fails the test. Warnings are kept as text:
    a recorded "unclosed event loop" would keep its loop alive (see ``tests._warnings``).
    """
    with record_text() as record:
        yield
    ours = [w for w in record if issubclass(w.category, ResourceLoopWarning)]
    assert ours == []
    for w in record:
        assert issubclass(w.category, ResourceWarning), w
        assert "unclosed" in str(w.message), w


# -- closed without the hook -------------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_closed_without_hook_warns_once_then_reap_forces(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder, hook_disabled: None
) -> None:
    """close_hook=False: one UngracefulLoopWarning per loop; reap() forces each resource once."""
    # Disabled through the environment: configure() would kick the reaper thread into a pass
    # that races this test for the closed loops.
    first, second = rec.template("first"), rec.template("second")

    async def main() -> tuple[Res, Res]:
        a = await first.acquire()
        b = await second.acquire()
        await first.acquire()
        return a, b

    loops = [factory(), factory()]
    with pytest.warns(UngracefulLoopWarning) as record:
        results = [loop.run_until_complete(main()) for loop in loops]
    assert [type(w.message) for w in record] == [UngracefulLoopWarning] * 2
    for w, loop in zip(record, loops, strict=True):
        assert f"{id(loop):#x}" in str(w.message)
        assert "resource_manager" in str(w.message)
    for loop in loops:
        assert "close" not in vars(loop)
        loop.close()
    assert rec.graceful == []
    assert rec.forced_resources == []
    assert stats().loops_tracked == 2

    with pytest.warns(ForcedReleaseWarning) as record:
        reap()
    assert sorted(map(id, rec.forced_resources)) == sorted(id(r) for pair in results for r in pair)
    assert rec.graceful == []
    messages = [str(w.message) for w in record]
    assert len(messages) == 4
    for loop in loops:
        mine = [m for m in messages if f"{id(loop):#x}" in m]
        assert len(mine) == 2
        assert any("'first'" in m for m in mine)
        assert any("'second'" in m for m in mine)
        assert all(type(loop).__name__ in m for m in mine)
    snap = stats()
    assert (snap.loops_tracked, snap.resources_live, snap.forced_releases) == (0, {}, 4)

    reap()  # nothing left: a second pass releases nothing and warns nothing
    assert len(rec.forced_resources) == 4


def test_what_a_cancelled_manager_exit_left_is_forced_when_the_loop_closes_without_hook(
    hook_disabled: None,
) -> None:
    """A manager exit cancelled mid-release leaves the releases not begun in custody; the
    loop then closes without the hook: the next pass forces them too.
    """
    forced: list[str] = []

    async def cancelled(res: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the task leaving the manager is cancelled, mid-release
        await asyncio.sleep(0)

    older = ResourceTemplate(lambda: "older", name="older", force_release_func=forced.append)
    newer = ResourceTemplate(
        lambda: "newer", cancelled, name="newer", force_release_func=forced.append
    )

    async def main() -> None:
        async with resource_manager():
            await older.acquire()
            await newer.acquire()

    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(main())
        assert forced == ["newer"]  # the release in progress
        assert stats().resources_live == {"older": 1}  # in custody, for the close
        loop.close()
        reap()
    assert forced == ["newer", "older"]
    assert stats().resources_live == {}
    _books_balance()


def test_hook_disabled_after_installation(rec: Recorder) -> None:
    """A hook installed earlier stands down once close_hook=False; the reaper forces."""
    t = rec.template("t")
    loop = asyncio.new_event_loop()
    r = loop.run_until_complete(t.acquire())
    # configure() wakes the reaper thread for a pass at once, which would race this thread for
    # the closed loop. Holding the pass lock keeps the thread out until reap() here is done
    # (the lock is reentrant); its own pass then finds nothing.
    with _runtime.reaper.pass_lock:
        resourceloop.configure(close_hook=False)
        loop.close()
        assert rec.graceful == []
        with pytest.warns(ForcedReleaseWarning, match="'t'"):
            reap()
        assert rec.forced_resources == [r]
    reap()
    assert rec.forced_resources == [r]


def test_reaper_thread_finds_a_closed_loop_within_an_interval(rec: Recorder) -> None:
    """The real thread, not reap(), releases a loop closed without the hook."""
    resourceloop.configure(close_hook=False, reap_interval=0.05)
    t = rec.template("t")

    async def main() -> Res:
        return await t.acquire()

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        r = asyncio.run(main())
        assert rec.forced_event.wait(10), "the reaper thread never released the closed loop"
        reap()  # waits for the thread's pass to finish (so it has warned), then finds nothing
    assert rec.forced_resources == [r]
    assert rec.graceful == []
    categories = [w.category for w in record]
    assert categories == [UngracefulLoopWarning, ForcedReleaseWarning]
    snap = stats()
    assert snap.reaper_alive
    assert snap.reaper_passes >= 2
    assert (snap.loops_tracked, snap.forced_releases) == (0, 1)


# -- abandoned ---------------------------------------------------------------------------------


def _abandon(
    t: ResourceTemplate[Res], factory: Callable[[], asyncio.AbstractEventLoop]
) -> tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], Res]:
    """A thread creates a loop, acquires on it and ends without closing it."""
    loop, r = abandon(t, factory)
    return weakref.ref(loop), r


@pytest.mark.parametrize("factory", FACTORIES)
def test_abandoned_loop_released_gracefully_and_dropped(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder, quiet_unclosed: None
) -> None:
    """A dead thread's idle loop is released on that loop, then no longer kept alive."""
    t = rec.template("t")
    probe, r = _abandon(t, factory)
    assert stats().resources_live == {"t": 1}
    reap()
    assert rec.graceful == [(r, True, False)]
    assert rec.forced_resources == []
    snap = stats()
    assert (snap.loops_tracked, snap.resources_live, snap.graceful_releases) == (0, {}, 1)
    loop = probe()
    assert loop is not None
    assert not loop.is_closed()  # this test still refers to it (through r): the owner's
    assert not loop.is_running()
    assert registry.get(loop) is None
    assert READY_ATTR not in vars(loop)
    if _is_uvloop(loop):
        return  # an unclosed uvloop loop is never collected, with or without resourceloop
    del loop, r
    rec.clear()
    _collect()
    assert probe() is None


@exact_refcounts
def test_abandoned_loop_nobody_refers_to_is_released_and_closed(rec: Recorder) -> None:
    """A dead thread's idle loop that only resourceloop refers to is released on it, then
    closed by the pass (no collection needed)."""
    t = rec.template("t")
    probe = _abandon(t, asyncio.new_event_loop)[0]  # the resource: kept by the store only
    reap()
    [(r, on_loop, closed_then)] = rec.graceful
    assert (on_loop, closed_then) == (True, False)
    assert r.loop is not None
    assert r.loop.is_closed()
    assert probe() is r.loop
    assert stats().loops_tracked == 0


class _Garbage:
    """A reference cycle that refers to a loop, as a client's transports or a traceback do."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.cycle = self


@exact_refcounts
@pytest.mark.parametrize(
    ("thorough", "old"),
    [
        pytest.param(False, False, id="reaper-pass-young-garbage"),
        pytest.param(True, True, id="reap-old-garbage"),
    ],
)
def test_abandoned_loop_only_garbage_refers_to_is_closed(
    rec: Recorder, thorough: bool, old: bool
) -> None:
    """A dead thread's idle loop that only uncollected garbage refers to is released and
    closed by the pass that ends it, not left for the collector to find unclosed ("unclosed
    event loop", ResourceWarning). Seen with httpx on 3.10: the reaper's own pass came first
    and looked without collecting, so the loop was released but stayed open.

    The reaper thread's pass may collect the young generation; ``reap()`` the old one too.
    """
    t = rec.template("t")
    probe = _abandon(t, asyncio.new_event_loop)[0]
    gc.disable()  # until the pass: an automatic collection would remove the garbage first
    try:
        garbage = _Garbage(probe())
        if old:
            gc.collect(1)  # it survives a young collection: old garbage from here on
        del garbage
        if thorough:
            reap()
        else:
            _runtime.reaper.reap_once(thorough=False)
    finally:
        gc.enable()
    [(r, on_loop, closed_then)] = rec.graceful
    assert (on_loop, closed_then) == (True, False)
    assert r.loop is not None
    assert r.loop.is_closed()
    assert stats().loops_tracked == 0


def _generations_reap_collects() -> list[int]:
    """The generations one ``reap()`` collects, each time it collects one.

    The collector's own runs are held off meanwhile, so only the pass's collections count.
    """
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.disable()
    gc.callbacks.append(count)
    try:
        reap()
    finally:
        gc.callbacks.remove(count)
        gc.enable()
    return collections


@exact_refcounts
def test_a_pass_collects_each_generation_at_most_once(rec: Recorder) -> None:
    """Two ended threads' loops that the program still refers to: ``reap()`` collects the
    young generation once and the old one once for both, not once per loop."""
    t = rec.template("t")
    kept = [abandon(t)[0], abandon(t)[0]]  # still referred to: each look says "reachable"
    assert sorted(_generations_reap_collects()) == [1, 2]
    assert len(rec.graceful) == 2
    assert not any(loop.is_closed() for loop in kept)  # the program's: left open
    for loop in kept:
        loop.close()


@exact_refcounts
def test_a_loop_left_behind_is_closed_with_its_async_generators_finalized(
    rec: Recorder,
) -> None:
    """A loop left behind with an async generator suspended in it (an SDK's stream left half
    read) is closed by the pass with that generator finalized: its ``finally`` runs on it."""
    t = rec.template("t")
    finalized: list[bool] = []

    async def stream() -> AsyncGenerator[int, None]:
        try:
            yield 1
            yield 2
        finally:
            finalized.append(asyncio.get_running_loop().is_running())

    async def half_read() -> None:
        client = await t.acquire()
        it = stream()
        await it.__anext__()
        # The client keeps the stream, as an SDK client keeps an open response: the stream
        # (whose finalizer hook refers to the loop) is then only the loop's own business.
        vars(client)["stream"] = it

    left = asyncio.new_event_loop()
    left.run_until_complete(half_read())
    del left
    newest = asyncio.new_event_loop()  # the thread moves on: the left loop is left behind
    newest.run_until_complete(t.acquire())
    with pytest.warns(UnclosedLoopWarning):
        reap()
    assert finalized == [True]
    [(r, on_loop, _)] = rec.graceful
    assert on_loop
    assert r.loop is not None
    assert r.loop.is_closed()
    newest.close()


@exact_refcounts
def test_abandoned_loop_reaped_from_a_running_loop(rec: Recorder) -> None:
    """purge() from a coroutine releases an abandoned loop gracefully, via a helper thread."""
    t = rec.template("t")
    _, r = _abandon(t, asyncio.new_event_loop)

    async def main() -> None:
        await t.purge()

    asyncio.run(main())
    assert rec.graceful == [(r, True, False)]
    assert stats().loops_tracked == 0
    assert r.loop is not None
    r.loop.close()  # whoever owns it may still close it: nothing is released twice
    assert len(rec.graceful) == 1
    assert rec.forced_resources == []


def test_loop_running_in_another_thread_is_never_touched(rec: Recorder) -> None:
    """A loop busy in its thread keeps its resources through reap(), then closes gracefully."""
    t = rec.template("t")
    loop = asyncio.new_event_loop()
    acquired = threading.Event()
    stop: list[asyncio.Future[None]] = []

    def owner() -> None:
        async def main() -> None:
            await t.acquire()
            stop.append(loop.create_future())
            acquired.set()
            await stop[0]

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert acquired.wait(10)
        assert loop.is_running()
        reap()
        reap()
        assert rec.graceful == []
        assert rec.forced_resources == []
        assert stats().resources_live == {"t": 1}
    finally:
        loop.call_soon_threadsafe(stop[0].set_result, None)
        thread.join()
    assert [(on_loop, closed) for _, on_loop, closed in rec.graceful] == [(True, False)]
    assert rec.forced_resources == []


def test_idle_loop_of_a_live_thread_is_never_touched(rec: Recorder) -> None:
    """A loop not running right now, whose thread is alive, may run again: reap() leaves it."""
    t = rec.template("t")
    acquired, go = threading.Event(), threading.Event()
    seen: list[int] = []

    def owner() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(t.acquire())
        acquired.set()
        go.wait(10)
        seen.append(len(rec.graceful) + len(rec.forced_resources))
        loop.close()

    thread = threading.Thread(target=owner)
    thread.start()
    assert acquired.wait(10)
    reap()
    go.set()
    thread.join()
    assert seen == [0]
    assert [(on_loop, closed) for _, on_loop, closed in rec.graceful] == [(True, False)]


# -- collected ---------------------------------------------------------------------------------


def test_collected_loop_is_released_forcefully_by_the_next_pass(rec: Recorder) -> None:
    """A never-closed loop that is garbage-collected: its entry goes, reap() forces once.

    Default loop only: an unclosed uvloop loop is never collected, with or without us.
    """
    t = rec.template("t", hold_loop=False)
    loop = asyncio.new_event_loop()
    r = loop.run_until_complete(t.acquire())
    probe = weakref.ref(loop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # asyncio's "unclosed event loop"
        del loop
        _collect()
    assert probe() is None
    snap = stats()
    assert snap.loops_tracked == 0  # the registry entry is gone with its key
    assert snap.resources_live == {"t": 1}  # ... but the resource still waits for release
    assert rec.forced_resources == []
    assert rec.graceful == []
    with pytest.warns(ForcedReleaseWarning, match="garbage-collected") as record:
        reap()
    assert len(record) == 1
    assert rec.forced_resources == [r]
    assert rec.graceful == []
    assert stats().resources_live == {}
    reap()
    assert rec.forced_resources == [r]


@pytest.mark.parametrize("callback_cut_short", [False, True], ids=["callback-ran", "cut-short"])
def test_collected_loop_in_an_abandoned_thread(rec: Recorder, callback_cut_short: bool) -> None:
    """An abandoned loop collected before any pass is released once, forcefully; also when its
    weak reference's callback was cut short (an interrupt in the collector): the next pass
    then finds it through its state."""
    t = rec.template("t", hold_loop=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        probe, r = _abandon(t, asyncio.new_event_loop)
        _collect()
    assert probe() is None
    if callback_cut_short:
        registry.collected.clear()  # what the callback handed over is lost
    with pytest.warns(ForcedReleaseWarning):
        reap()
    assert rec.forced_resources == [r]
    assert rec.graceful == []
    assert stats().resources_live == {}
    reap()
    assert rec.forced_resources == [r]


# -- robustness --------------------------------------------------------------------------------


def test_reap_with_nothing_tracked() -> None:
    """A pass over an empty registry is a no-op (and does not fail)."""
    reap()
    reap()
    assert stats().reaper_passes == 2


def test_failing_force_release_is_logged_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A force_release_func that raises never stops the pass or the other releases."""
    resourceloop.configure(close_hook=False)
    done: list[str] = []

    def boom(r: object) -> None:
        raise OSError("cannot close")

    bad = ResourceTemplate(object, name="bad", force_release_func=boom)
    good = ResourceTemplate(object, name="good", force_release_func=lambda r: done.append("good"))

    async def main() -> None:
        await good.acquire()
        await bad.acquire()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        asyncio.run(main())
        reap()
    assert done == ["good"]
    assert any("'bad'" in r.getMessage() for r in caplog.records if r.name == "resourceloop")
    snap = stats()
    # A force function that raises counts as a failure, not also as forced: one end each.
    assert (snap.release_failures, snap.forced_releases, snap.loops_tracked) == (1, 1, 0)


# -- the thread --------------------------------------------------------------------------------


class CountingWakeup:
    """Wraps the registry's wake-up; says when the reaper thread blocks on it, and how often."""

    def __init__(self, wakeup: Any) -> None:
        self.wakeup = wakeup
        self.acquires = 0
        self.entered = threading.Event()

    def wait(self, timeout: float = -1) -> bool:
        self.acquires += 1
        self.entered.set()
        return bool(self.wakeup.wait(timeout))

    def ring(self) -> None:
        self.wakeup.ring()


class RecordingEvent(threading.Event):
    """The reaper's kick event, recording each wait: its timeout and whether it was set."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[tuple[float | None, bool]] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append((timeout, self.is_set()))
        self.waiting.set()
        return super().wait(timeout)


@pytest.fixture
def wakeup(monkeypatch: pytest.MonkeyPatch) -> CountingWakeup:
    """The registry's wake-up, not rung (nothing to do), seen by reaper threads through a
    counter."""
    registry.wakeup.wait(0)
    counting = CountingWakeup(registry.wakeup)
    monkeypatch.setattr(registry, "wakeup", counting)
    return counting


def test_idle_reaper_thread_blocks_on_the_wakeup_lock(wakeup: CountingWakeup) -> None:
    """With nothing tracked the thread blocks on the wake-up lock (no polling, no pass)."""
    reaper = _reaper.Reaper()
    reaper.ensure_started()
    try:
        assert wakeup.entered.wait(10), "the idle reaper never blocked on its wake-up lock"
        assert wakeup.acquires == 1
        assert stats().reaper_passes == 0
        wakeup.entered.clear()
        registry.wakeup.ring()  # woken with still nothing to do: it blocks again, alive
        assert wakeup.entered.wait(10)
        assert wakeup.acquires == 2
        assert reaper.alive
        assert stats().reaper_passes == 0
    finally:
        reaper.stop(timeout=10)
    assert not reaper.alive


def test_busy_reaper_thread_waits_an_interval_between_passes(wakeup: CountingWakeup) -> None:
    """With a loop tracked the thread waits reap_interval (or a kick) before each pass."""
    loop = asyncio.new_event_loop()
    state, _ = registry.add(loop, "tracked")
    reaper = _reaper.Reaper()
    kick = RecordingEvent()
    reaper._kick = kick
    reaper.ensure_started()
    try:
        assert kick.waiting.wait(10), "the reaper never waited for its interval"
        assert kick.waits == [(3600.0, False)]
        assert stats().reaper_passes == 0
        kick.waiting.clear()
        reaper.kick()  # one pass, then the next wait (the kick cleared)
        assert kick.waiting.wait(10)
        assert kick.waits == [(3600.0, False), (3600.0, False)]
        assert stats().reaper_passes == 1
        assert wakeup.acquires == 0  # never idle meanwhile
    finally:
        reaper.stop(timeout=10)
        registry.discard(state)
        loop.close()
    assert not reaper.alive
    assert stats().reaper_passes == 1  # stopping ends the thread without another pass


def test_one_reaper_thread_and_none_after_stop(wakeup: CountingWakeup) -> None:
    """ensure_started() starts one thread however often it is called, and none once stopped."""
    reaper = _reaper.Reaper()
    assert not reaper.alive
    reaper.ensure_started()
    first = reaper._thread
    assert first is not None
    assert first.daemon
    assert first.name == "resourceloop-reaper"
    try:
        for _ in range(3):
            reaper.ensure_started()
        assert reaper._thread is first
        names = [t.name for t in threading.enumerate() if t.name == "resourceloop-reaper"]
        assert len(names) == 1
    finally:
        reaper.stop(timeout=10)
    assert not first.is_alive()
    reaper.ensure_started()
    assert reaper._thread is first
    assert not reaper.alive
    assert repr(reaper) == "<Reaper alive=False stopping=True>"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reaper_thread_that_died_is_started_again(wakeup: CountingWakeup) -> None:
    """If the thread ever ends without stop() (something outside a pass raised), the next
    ensure_started() starts a new one rather than trusting a stale running flag."""
    reaper = _reaper.Reaper()
    runs: list[threading.Thread] = []
    second, done = threading.Event(), threading.Event()

    def loop_body() -> None:
        runs.append(threading.current_thread())
        if len(runs) == 1:
            raise SystemExit  # ends the thread quietly, outside _pass's error handling
        second.set()
        done.wait(30)

    reaper._loop = loop_body  # type: ignore[method-assign]
    reaper.ensure_started()
    first = reaper._thread
    assert first is not None
    first.join(30)
    assert not first.is_alive()
    try:
        reaper.ensure_started()
        assert second.wait(10), "no new reaper thread after the first one died"
        restarted = reaper._thread
        assert restarted is not None
        assert restarted is not first
        assert restarted.is_alive()
        assert runs == [first, restarted]
    finally:
        done.set()
        reaper.stop(timeout=10)
    assert not reaper.alive


def test_reaper_stop_from_its_own_thread_does_not_join_itself() -> None:
    """stop() called on the reaper thread (by a release function) returns instead of hanging."""
    reaper = _reaper.Reaper()
    errors: list[BaseException] = []

    def run() -> None:
        reaper._thread = threading.current_thread()
        try:
            reaper.stop(timeout=3600)
        except BaseException as exc:  # pragma: no cover - the failure this test guards against
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert errors == []


@exact_refcounts
def test_an_unreferenced_left_behind_loop_is_ended_without_a_collection(
    monkeypatch: pytest.MonkeyPatch, rec: Recorder
) -> None:
    """A loop a live thread left behind, that nothing else refers to, is ended (released on
    it, closed) by a pass that calls no ``gc.collect()``."""
    calls: list[object] = []

    def collect(*args: object) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    t = rec.template("t")
    go, ready = threading.Event(), threading.Event()
    newest: list[asyncio.AbstractEventLoop] = []

    def worker() -> None:
        left = asyncio.new_event_loop()  # left behind, unclosed, once the next one is tracked
        left.run_until_complete(t.acquire())
        del left
        newest.append(asyncio.new_event_loop())
        newest[0].run_until_complete(t.acquire())
        ready.set()
        go.wait(30)

    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    try:
        assert ready.wait(30)
        with pytest.warns(UnclosedLoopWarning, match="'worker'"):
            reap()
        assert [(on_loop, closed) for _, on_loop, closed in rec.graceful] == [(True, False)]
        assert stats().resources_live == {"t": 1}  # the newest loop's
        [(released, _, _)] = rec.graceful
        assert released.loop is not None
        assert released.loop.is_closed()  # nothing else could ever close it
        assert calls == []
    finally:
        go.set()
        thread.join(30)
        monkeypatch.undo()
        for loop in newest:
            loop.close()


class ArrivalLock:
    """The reaper's start lock, held by the test, counting the threads that wait for it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Semaphore(0)

    def __enter__(self) -> bool:
        self.arrived.release()
        return self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@exact_refcounts
def test_two_racing_starts_make_one_reaper_thread(wakeup: CountingWakeup) -> None:
    """Two threads that both find no reaper running start one thread between them."""
    reaper = _reaper.Reaper()
    start_lock = ArrivalLock()
    reaper._start_lock = start_lock  # type: ignore[assignment]
    start_lock.lock.acquire()  # both callers get past the unlocked check, then queue here
    callers = [threading.Thread(target=reaper.ensure_started) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        assert start_lock.arrived.acquire(timeout=30)
        assert start_lock.arrived.acquire(timeout=30)
        start_lock.lock.release()
        for caller in callers:
            caller.join(30)
        names = [t.name for t in threading.enumerate() if t.name == "resourceloop-reaper"]
        assert names == ["resourceloop-reaper"]
    finally:
        reaper.stop(timeout=10)


def test_the_owner_gets_its_run_forever_back(rec: Recorder) -> None:
    """After releasing an abandoned loop the reaper removes its run_forever guard from it."""
    t = rec.template("t")
    loop, _ = abandon(t)
    assert "run_forever" not in vars(loop)
    reap()
    assert len(rec.graceful) == 1
    assert "run_forever" not in vars(loop)
    loop.close()


def _held_with_an_interrupting_force(forced: list[str]) -> Callable[[], Coroutine[Any, Any, None]]:
    """A coroutine acquiring two templates; forcing the newer one raises KeyboardInterrupt."""

    def interrupt(r: object) -> None:
        forced.append("interrupted")
        raise KeyboardInterrupt

    older = ResourceTemplate(object, name="older", force_release_func=lambda r: forced.append("o"))
    newer = ResourceTemplate(object, name="newer", force_release_func=interrupt)

    async def main() -> None:
        await older.acquire()
        await newer.acquire()

    return main


def test_force_release_interrupt_propagates_after_the_others(hook_disabled: None) -> None:
    """A KeyboardInterrupt from one force function reaches reap() once every item is forced."""
    forced: list[str] = []
    main = _held_with_an_interrupting_force(forced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        asyncio.run(main())
        with pytest.raises(KeyboardInterrupt):
            reap()
    assert forced == ["interrupted", "o"]
    snap = stats()
    assert (snap.forced_releases, snap.loops_tracked, snap.resources_live) == (2, 0, {})


def test_force_interrupt_on_a_closed_loop_still_untracks_it(hook_disabled: None) -> None:
    """A KeyboardInterrupt from a force function on a closed loop, still referenced: the pass
    forces every item, then untracks the loop, before the interrupt reaches reap()."""
    forced: list[str] = []
    main = _held_with_an_interrupting_force(forced)
    loop = asyncio.new_event_loop()  # kept: the pass finds it closed, not collected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        loop.run_until_complete(main())
        loop.close()
        with pytest.raises(KeyboardInterrupt):
            reap()
    assert forced == ["interrupted", "o"]
    assert registry.get(loop) is None
    snap = stats()
    assert (snap.forced_releases, snap.loops_tracked, snap.resources_live) == (2, 0, {})


@exact_refcounts
def test_unclosed_loops_of_two_threads_warn_once_each(rec: Recorder) -> None:
    """Two living threads that leave loops unclosed and move on: one pass ends (and closes)
    both, with one warning for each thread."""
    t = rec.template("t")  # holds its loop: resourceloop holds it until a pass ends it
    ready = threading.Barrier(3)
    done = threading.Event()

    def owner() -> None:
        dropped = asyncio.new_event_loop()  # left unclosed and dropped ...
        dropped.run_until_complete(t.acquire())
        del dropped
        newest = asyncio.new_event_loop()  # ... once this one supersedes it
        newest.run_until_complete(t.acquire())
        ready.wait(30)
        done.wait(30)  # alive while the main thread reaps
        newest.close()

    threads = [threading.Thread(target=owner, name=f"owner-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(30)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", UnclosedLoopWarning)
            reap()  # nothing else refers to the superseded loops: released on them, closed
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    ours = [w for w in record if issubclass(w.category, UnclosedLoopWarning)]
    assert sorted(str(w.message).split("'")[1] for w in ours) == ["owner-0", "owner-1"]
    assert len(rec.graceful) == 4  # two dropped (by the reaper), two closed by their owner
    assert all(r.loop is not None and r.loop.is_closed() for r, _, _ in rec.graceful)


@exact_refcounts
def test_a_thread_started_after_a_warned_one_ended_is_warned_too(rec: Recorder) -> None:
    """One warning per thread, even when the next thread reuses the ended one's ident."""
    t = rec.template("t")
    idents: list[int | None] = []
    names: list[str] = []

    for i in range(2):
        ready, done = threading.Event(), threading.Event()

        def owner(ready: threading.Event, done: threading.Event) -> None:
            idents.append(threading.get_ident())
            dropped = asyncio.new_event_loop()  # left unclosed and dropped ...
            dropped.run_until_complete(t.acquire())
            del dropped
            newest = asyncio.new_event_loop()  # ... once this one supersedes it
            newest.run_until_complete(t.acquire())
            ready.set()
            done.wait(30)  # alive while the main thread reaps
            newest.close()

        thread = threading.Thread(target=owner, args=(ready, done), name=f"owner-{i}")
        thread.start()
        try:
            assert ready.wait(30)
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("ignore")
                warnings.simplefilter("always", UnclosedLoopWarning)
                reap()
        finally:
            done.set()
            thread.join(30)
        names += [
            str(w.message).split("'")[1]
            for w in record
            if issubclass(w.category, UnclosedLoopWarning)
        ]
    assert names == ["owner-0", "owner-1"], idents
    assert len(rec.graceful) == 4


@exact_refcounts
def test_a_warning_filter_set_to_error_cannot_break_a_pass(
    hook_disabled: None, caplog: pytest.LogCaptureFixture
) -> None:
    """With ForcedReleaseWarning turned into an error, reap() still forces and only logs it."""
    forced: list[object] = []
    t = ResourceTemplate(object, name="t", force_release_func=forced.append)

    async def main() -> None:
        await t.acquire()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        asyncio.run(main())
        warnings.simplefilter("error", ForcedReleaseWarning)
        reap()
    assert len(forced) == 1
    assert any(
        "ForcedReleaseWarning" in r.getMessage() and "'t'" in r.getMessage()
        for r in caplog.records
        if r.name == "resourceloop"
    )
    assert stats().forced_releases == 1


class NoDictLoop(asyncio.SelectorEventLoop):
    """A loop that holds no instance attributes, as for a C loop class without ``__dict__``.

    ``vars()`` fails. resourceloop sets and reads the loop's attributes with ``object``'s own
    methods, never through ``__dict__``, so the two it stores are read-only properties here:
    storing them fails as it does without ``__dict__``.
    """

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        raise AttributeError("__dict__")

    @property
    def _resourceloop_ready(self) -> Any:
        raise AttributeError("_resourceloop_ready")

    @property
    def close(self) -> Callable[[], None]:
        return functools.partial(asyncio.SelectorEventLoop.close, self)


def test_abandoned_loop_without_dict_is_released_on_it(rec: Recorder) -> None:
    """A loop class without ``__dict__`` (no run_forever guard possible) is still released."""
    t = rec.template("t")
    loop, r = abandon(t, NoDictLoop)
    try:
        reap()
        assert [(res, own, closed) for res, own, closed in rec.graceful] == [(r, True, False)]
        assert stats().resources_live == {}
    finally:
        loop.close()


def test_a_failing_pass_is_logged_and_the_thread_carries_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a pass raises is logged with its traceback; _pass() itself returns."""

    def broken(**options: object) -> None:
        raise RuntimeError("broken pass")

    reaper = _reaper.Reaper()
    monkeypatch.setattr(reaper, "reap_once", broken)
    reaper._pass()
    [record] = [r for r in caplog.records if r.name == "resourceloop"]
    assert "reaper pass failed" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


# -- what the reaper leaves behind -------------------------------------------------------------


def _books_balance() -> None:
    s = stats()
    live = sum(s.resources_live.values())
    assert s.acquisitions == s.graceful_releases + s.forced_releases + s.release_failures + live


def test_an_acquisition_on_an_abandoned_loop_the_reaper_runs_is_refused(rec: Recorder) -> None:
    """A task left on an abandoned loop that acquires when the reaper runs it gets an error.

    The reaper takes the loop's resources to release them and untracks the loop: a resource
    created meanwhile would be stored on a loop nobody releases any more.
    """
    a, b = rec.template("a"), rec.template("b")
    refused: list[BaseException] = []
    out: list[asyncio.AbstractEventLoop] = []
    tasks: list[asyncio.Task[None]] = []

    async def late() -> None:
        try:
            await b.acquire()
        except resourceloop.LoopClosedError as exc:
            refused.append(exc)

    def owner() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(a.acquire())
        tasks.append(loop.create_task(late()))  # first to run when the loop runs again
        out.append(loop)

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join()
    try:
        reap()
        assert len(refused) == 1
        assert tasks[0].done()
        assert [r.loop is out[0] for r, _, _ in rec.graceful] == [True]
        assert rec.forced_resources == []
        assert stats().resources_live == {}
        _books_balance()
    finally:
        out[0].close()


@pytest.mark.parametrize("held", [1, 4])
def test_the_owner_waits_for_the_reaper_as_long_as_its_releases_may_take(held: int) -> None:
    """The owner's wait on the reaper covers every release in custody on the loop, and more.

    The reaper's run of an abandoned loop ends within ``(n + 1) * (release_timeout + grace)``
    for ``n`` resources held or being created (``release_on_loop``); a shorter wait would fail
    the owner's call with "This event loop is already running" while slow releases are still
    inside their bound.
    """
    from resourceloop._lifecycle import guard_bound
    from resourceloop._release import grace, release_batch, release_bound

    templates = [ResourceTemplate(object, name=f"r{i}") for i in range(held)]

    async def hold() -> None:
        for template in templates:
            await template.acquire()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(hold())
        state = registry.get(loop)
        assert state is not None
        batch = registry.take_all(state)  # in custody, as the reaper holds it
        for timeout in (0.5, 4.0, 10.0, 60.0):
            resourceloop.configure(release_timeout=timeout)
            assert grace(timeout) == min(0.25 * timeout, 0.5)
            assert release_bound(held) == (held + 1) * (timeout + grace(timeout))
            assert guard_bound(state) >= (held + 1) * (timeout + grace(timeout))
        loop.run_until_complete(release_batch(batch))
    finally:
        loop.close()
    assert stats().graceful_releases == held
    _books_balance()


def test_a_left_behind_loop_still_referenced_then_closed_without_the_hook_is_forced(
    rec: Recorder,
) -> None:
    """A loop the thread moved on from but the program still refers to is left alone; closed
    later behind the hook's back, the next pass forces its resources."""
    t = rec.template("t")
    left = asyncio.new_event_loop()
    r = left.run_until_complete(t.acquire())
    newest = asyncio.new_event_loop()
    newest.run_until_complete(t.acquire())
    try:
        reap()  # left behind, but this test still refers to it: its owner's to run again
        reap()
        assert rec.forced_resources == []
        assert rec.graceful == []
        assert not left.is_closed()
        assert stats().resources_live == {"t": 2}
        type(left).close(left)  # no hook
        with pytest.warns(ForcedReleaseWarning, match="closed without running the close hook"):
            reap()
        assert rec.forced_resources == [r]
        assert rec.graceful == []
        assert stats().resources_live == {"t": 1}  # the newest loop's
        _books_balance()
    finally:
        newest.close()


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's own, about the dropped loop
def test_a_left_behind_loop_used_again_then_dropped_is_still_released(rec: Recorder) -> None:
    """A referenced left-behind loop acquired on again is its owner's; its resources do not
    refer to it, so dropped it is collected like any object, and the next pass forces them."""
    t, u = rec.template("t", hold_loop=False), rec.template("u", hold_loop=False)
    old = asyncio.new_event_loop()
    r1 = old.run_until_complete(t.acquire())
    newest = asyncio.new_event_loop()
    newest.run_until_complete(t.acquire())
    try:
        reap()  # left behind, but this test still refers to it
        assert rec.graceful == []
        assert rec.forced_resources == []
        r2 = old.run_until_complete(u.acquire())  # in use after all
        del old
        _collect()
        with pytest.warns(ForcedReleaseWarning, match="garbage-collected"):
            reap()
        assert sorted(map(id, rec.forced_resources)) == sorted(map(id, [r1, r2]))
        assert stats().resources_live == {"t": 1}  # the newest loop's
        _books_balance()
    finally:
        newest.close()


def _interrupting_template(forced: list[Res]) -> ResourceTemplate[Res]:
    """A template whose first release is interrupted by Ctrl-C (outside its task) mid-way."""
    interrupts = [1]

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=True)

    def interrupt() -> None:
        raise KeyboardInterrupt

    async def release(r: Res) -> None:
        if interrupts:
            interrupts.pop()
            asyncio.get_running_loop().call_soon(interrupt)  # Ctrl-C, outside the task
            await asyncio.Event().wait()

    return ResourceTemplate(acquire, release, name="t", force_release_func=forced.append)


def _leave_behind(t: ResourceTemplate[Res]) -> asyncio.AbstractEventLoop:
    """Acquire on a loop nobody keeps, then on the newest loop of this thread (returned)."""
    left = asyncio.new_event_loop()
    left.run_until_complete(t.acquire())
    del left
    newest = asyncio.new_event_loop()  # the thread moves on: the left loop is left behind
    newest.run_until_complete(t.acquire())
    return newest


@exact_refcounts
def test_ctrl_c_while_the_reaper_runs_a_left_behind_loop_forces_first() -> None:
    """A KeyboardInterrupt out of a left-behind loop's run, mid-release, reaches reap() after
    the interrupted release is forced, and the loop is untracked."""
    forced: list[Res] = []
    newest = _leave_behind(_interrupting_template(forced))
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            with pytest.raises(KeyboardInterrupt):
                reap()
        ours = [w.category for w in record if issubclass(w.category, ResourceLoopWarning)]
        assert ours[0] is ForcedReleaseWarning
        assert len(forced) == 1
        assert stats().loops_tracked == 1  # the newest loop only
        assert stats().resources_live == {"t": 1}  # the newest loop's
        _books_balance()
        del record
        dropped = forced[0].loop
        assert dropped is not None
        forced[0].loop = None
        assert dropped.is_closed()
    finally:
        newest.close()


@exact_refcounts
def test_ctrl_c_while_the_reaper_runs_a_left_behind_loop_still_closes_and_warns() -> None:
    """Interrupted or not, the left-behind loop (nobody else can close it) is closed and its
    thread warned once, before the interrupt reaches reap()."""
    forced: list[Res] = []
    newest = _leave_behind(_interrupting_template(forced))
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            with pytest.raises(KeyboardInterrupt):
                reap()
        ours = [w.category for w in record if issubclass(w.category, ResourceLoopWarning)]
        del record
        dropped = forced[0].loop
        assert dropped is not None
        forced[0].loop = None
        closed = dropped.is_closed()
        if not closed:
            type(dropped).close(dropped)
        assert closed
        assert ours == [ForcedReleaseWarning, UnclosedLoopWarning]
    finally:
        newest.close()


@exact_refcounts
def test_books_balance_until_the_pass_that_ends_a_left_behind_loop(rec: Recorder) -> None:
    """A dropped left-behind loop is never collected (its store is held): its resource counts
    live, once, until the pass that releases it on the loop."""
    t = rec.template("t")  # holds its loop
    left = asyncio.new_event_loop()
    left.run_until_complete(t.acquire())
    probe = weakref.ref(left)
    newest = asyncio.new_event_loop()
    newest.run_until_complete(t.acquire())
    try:
        del left
        _collect()  # no collector ends it: the registry holds it until a pass decides
        assert probe() is not None
        assert stats().resources_live == {"t": 2}
        _books_balance()
        with pytest.warns(UnclosedLoopWarning):
            reap()  # released on the left-behind loop, which is then closed
        assert stats().resources_live == {"t": 1}
        _books_balance()
        assert [(on_loop, closed) for _, on_loop, closed in rec.graceful] == [(True, False)]
    finally:
        newest.close()
    _books_balance()


def _epoll_fds() -> int:
    """How many epoll instances this process holds open (each selector loop has one)."""
    fds = os.listdir("/proc/self/fd")
    count = 0
    for fd in fds:
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        except OSError:  # closed meanwhile (the listing's own fd)
            pass
    return count


@exact_refcounts
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("gc_on", [True, False], ids=["gc-on", "gc-off"])
def test_a_left_behind_loop_is_really_closed_after_its_release(rec: Recorder, gc_on: bool) -> None:
    """The reaper closes the left-behind loop it ended: its selector's fd is freed by the pass,
    not left to the collector (gc-off proves no collection is involved)."""
    t = rec.template("t")
    baseline = _epoll_fds()
    newest = _leave_behind(t)
    try:
        assert _epoll_fds() == baseline + 2
        if not gc_on:
            gc.collect()
            gc.disable()
        try:
            with pytest.warns(UnclosedLoopWarning):
                reap()
            assert len(rec.graceful) == 1
            assert _epoll_fds() == baseline + 1  # the newest loop's
            [(released, on_loop, closed_then)] = rec.graceful
            assert (on_loop, closed_then) == (True, False)
            assert released.loop is not None
            assert released.loop.is_closed()
            assert stats().loops_tracked == 1
        finally:
            gc.enable()
    finally:
        newest.close()


# -- what a pass looks at ----------------------------------------------------------------------


class LookedAt(asyncio.SelectorEventLoop):
    """A loop that counts how often something asks whether it is closed or running."""

    looks = 0

    def is_closed(self) -> bool:
        self.looks += 1
        return super().is_closed()

    def is_running(self) -> bool:
        self.looks += 1
        return super().is_running()


class Parked:
    """A thread that tracks a ``LookedAt`` loop, leaves it idle and waits; ``end()`` ends it."""

    def __init__(self, t: ResourceTemplate[Res], name: str) -> None:
        self.loop = LookedAt()
        self._go = threading.Event()
        ready = threading.Event()

        def run() -> None:
            self.loop.run_until_complete(t.acquire())
            ready.set()
            self._go.wait(30)

        self.thread = threading.Thread(target=run, name=name)
        self.thread.start()
        assert ready.wait(30)

    def end(self) -> None:
        self._go.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _thread_pass() -> None:
    _runtime.reaper.reap_once(thorough=False)


def test_a_pass_looks_only_at_loops_that_changed(rec: Recorder) -> None:
    """Idle loops of living threads, and one left behind that the program keeps: once a
    pass has seen them, the reaper thread's passes ask none of them anything, but the one left
    behind when its next check is due (the 1st, 2nd, 4th... pass since)."""
    t = rec.template("t")
    parked = [Parked(t, f"parked-{i}") for i in range(3)]
    kept = LookedAt()  # left behind by this thread once `newest` is tracked, and kept
    newest = LookedAt()
    try:
        kept.run_until_complete(t.acquire())
        newest.run_until_complete(t.acquire())
        loops = [p.loop for p in parked] + [kept, newest]
        _thread_pass()  # 1st: sees them all; `kept` is left behind (its first check)
        _thread_pass()  # 2nd: `kept`'s second check
        for loop in loops:
            loop.looks = 0
        _thread_pass()  # 3rd: nothing changed, nothing due
        assert [loop.looks for loop in loops] == [0] * 5
        _thread_pass()  # 4th: `kept` is due again, and only it
        assert [loop.looks for loop in loops[:3]] == [0] * 3
        assert kept.looks > 0
        assert newest.looks == 0
        assert rec.graceful == []
        assert stats().resources_live == {"t": 5}
    finally:
        for p in parked:
            p.end()
            p.loop.close()
        kept.close()
        newest.close()
    assert len(rec.graceful) == 5


def test_a_thread_that_ends_hands_its_loops_to_the_next_pass(rec: Recorder) -> None:
    """A thread's end is an event: the next pass of the reaper thread ends that thread's idle
    loop on it, and asks nothing of the loop of a thread that lives on."""
    t = rec.template("t")
    ending, living = Parked(t, "ending"), Parked(t, "living")
    try:
        _thread_pass()  # both seen
        living.loop.looks = 0
        ending.end()
        assert list(registry.ended) == [ending.thread]  # handed over as the thread ended
        _thread_pass()
        assert [(r.loop, on_loop) for r, on_loop, _ in rec.graceful] == [(ending.loop, True)]
        assert living.loop.looks == 0
        assert stats().resources_live == {"t": 1}
    finally:
        living.end()
        ending.loop.close()
        living.loop.close()


def test_a_thread_reported_ended_while_still_alive_is_waited_for(rec: Recorder) -> None:
    """The end callback runs while ``is_alive()`` may still say True (its state is cleared
    before the thread is marked done): a pass then leaves the loop alone, and a later pass
    ends it once the thread is gone."""
    t = rec.template("t")
    owner = Parked(t, "owner")
    try:
        _thread_pass()
        registry.ended.append(owner.thread)  # as the callback would, a moment early
        _thread_pass()
        assert rec.graceful == []
        owner.end()
        _thread_pass()
        assert [(r.loop, on_loop) for r, on_loop, _ in rec.graceful] == [(owner.loop, True)]
    finally:
        owner.end()
        owner.loop.close()


@exact_refcounts
def test_reap_does_not_collect_for_a_kept_loop_each_time(rec: Recorder) -> None:
    """A loop left behind that the program keeps is checked on the same schedule by
    ``reap()``: a call when its check is not due collects no garbage and asks it nothing."""
    t = rec.template("t")
    kept, newest = LookedAt(), LookedAt()
    try:
        kept.run_until_complete(t.acquire())
        newest.run_until_complete(t.acquire())
        reap()
        reap()  # its 1st and 2nd checks, each after a young collection
        kept.looks = 0
        assert _generations_reap_collects() == []
        assert kept.looks == 1  # reap() looks whether each loop was closed, once
        assert stats().resources_live == {"t": 2}
    finally:
        kept.close()
        newest.close()


def test_a_loop_closed_behind_its_hook_is_found_by_a_full_pass(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop whose close hook was bypassed (``type(loop).close(loop)``) is found by
    ``reap()`` or by every ``FULL_SCAN_EVERY``-th pass of the reaper thread, not every pass."""
    monkeypatch.setattr(_reaper, "FULL_SCAN_EVERY", 4)
    t = rec.template("t")
    loop = asyncio.new_event_loop()
    r = loop.run_until_complete(t.acquire())
    _thread_pass()  # 1st
    type(loop).close(loop)
    _thread_pass()
    _thread_pass()
    assert rec.forced_resources == []
    with pytest.warns(ForcedReleaseWarning, match="closed without running the close hook"):
        _thread_pass()  # 4th: a full pass
    assert rec.forced_resources == [r]
    assert stats().loops_tracked == 0


@exact_refcounts
def test_a_left_behind_loop_dropped_after_many_looks_is_ended_by_the_next_reap(
    rec: Recorder,
) -> None:
    """However often ``reap()`` found a left-behind loop still referenced (its scheduled
    looks then come further and further apart), the first ``reap()`` after the program drops
    it ends it: ``reap()`` looks again, out of turn, at each one whose references changed."""
    t = rec.template("t")
    kept = [asyncio.new_event_loop()]
    kept[0].run_until_complete(t.acquire())
    newest = asyncio.new_event_loop()
    newest.run_until_complete(t.acquire())
    try:
        for _ in range(10):  # looks at passes 1, 2, 4 and 8; the next is due at 16
            reap()
        assert rec.graceful == []
        reap()  # nothing changed: no look out of turn
        assert rec.graceful == []
        kept.clear()
        with pytest.warns(UnclosedLoopWarning, match="left unclosed"):
            reap()
        assert [(on_loop, closed) for _, on_loop, closed in rec.graceful] == [(True, False)]
        assert stats().resources_live == {"t": 1}  # the newest loop's
    finally:
        newest.close()
