"""Tests for ``resourceloop._closehook``: graceful release on the loop, just before it closes.

Every way of closing a loop that users reach for (``asyncio.run``, ``asyncio.Runner``, asgiref's
``async_to_sync``, ``uvloop.run``, ``loop.run_until_complete`` + ``loop.close()``) must release
the loop's resources on that loop, while it can still run, with no code change; the fallbacks
(async-generator hook, reaper) take over where ``close`` cannot be wrapped.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import resourceloop
from resourceloop import (
    LoopClosedError,
    ResourceTemplate,
    _closehook,
    _crossthread,
    _lifecycle,
    _release,
    reap,
    resource_manager,
    stats,
)
from resourceloop._crossthread import RemoteCall
from resourceloop._registry import registry
from resourceloop._state import GONE
from resourceloop.warnings import (
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    ResourceLoopWarning,
)
from tests._fakes import Recorder, Res
from tests._loops import abandon, needs_uvloop, uvloop
from tests._loops import is_uvloop as _is_uvloop
from tests._loops import new_uvloop as _new_uvloop
from tests._warnings import record_text

pytestmark = pytest.mark.usefixtures("slow_reaper")  # reap() drives every pass here


# -- the ways a loop is closed -----------------------------------------------------------------

Main = Callable[[], Coroutine[Any, Any, Any]]


def _asyncio_run(main: Main) -> Any:
    return asyncio.run(main())


def _runner(main: Main) -> Any:
    if sys.version_info >= (3, 11):
        with asyncio.Runner() as runner:
            return runner.run(main())
    else:  # pragma: no cover - skipped there
        raise NotImplementedError


def _async_to_sync(main: Main) -> Any:
    from asgiref.sync import async_to_sync

    return async_to_sync(main)()


def _uvloop_run(main: Main) -> Any:
    return uvloop.run(main())


def _manual(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[Main], Any]:
    def run(main: Main) -> Any:
        loop = factory()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    return run


needs_runner = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")

CLOSERS = [
    pytest.param(_asyncio_run, id="asyncio.run"),
    pytest.param(_runner, id="asyncio.Runner", marks=needs_runner),
    pytest.param(_async_to_sync, id="async_to_sync"),
    pytest.param(_uvloop_run, id="uvloop.run", marks=needs_uvloop),
    pytest.param(_manual(_new_uvloop), id="uvloop-manual", marks=needs_uvloop),
    pytest.param(_manual(asyncio.new_event_loop), id="asyncio-manual"),
]
FACTORIES = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(_new_uvloop, id="uvloop", marks=needs_uvloop),
]


@pytest.mark.parametrize("close", CLOSERS)
def test_released_on_the_loop_just_before_close(
    close: Callable[[Main], Any], rec: Recorder
) -> None:
    """Each resource is released once, on its own still-open loop, after the body, newest first."""
    first, second = rec.template("first"), rec.template("second")

    async def main() -> tuple[Res, Res, asyncio.AbstractEventLoop]:
        a, b = await first.acquire(), await second.acquire()
        assert stats().resources_live == {"first": 1, "second": 1}
        rec.events.append("body done")
        return a, b, asyncio.get_running_loop()

    a, b, loop = close(main)
    assert rec.events == ["body done", "release second", "release first"]
    assert [c.resource for c in rec.calls] == [b, a]
    assert all(c.kind == "graceful" and c.on_own_loop for c in rec.calls)
    assert [c.loop_closed for c in rec.calls] == [False, False]
    assert loop.is_closed()
    snap = stats()
    assert (snap.loops_tracked, snap.resources_live) == (0, {})
    assert (snap.graceful_releases, snap.forced_releases) == (2, 0)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
@needs_uvloop
def test_asyncio_run_with_uvloop_factory(rec: Recorder) -> None:
    """asyncio.run on a uvloop loop releases on that loop too."""
    t = rec.template("t")

    async def main() -> Res:
        return await t.acquire()

    r = asyncio.run(main(), loop_factory=_new_uvloop)  # type: ignore[call-arg,unused-ignore]
    assert [(c.kind, c.on_own_loop, c.loop_closed) for c in rec.calls] == [
        ("graceful", True, False)
    ]
    assert r.loop is not None
    assert _is_uvloop(r.loop)


@pytest.mark.parametrize("factory", FACTORIES)
def test_sync_release_runs_on_the_loop_too(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """A synchronous acquire/release pair is also released on the loop, before close."""
    t = rec.template("sync", sync=True)
    loop = factory()
    r = loop.run_until_complete(t.acquire())
    loop.close()
    assert [(c.resource, c.on_own_loop, c.loop_closed) for c in rec.calls] == [(r, True, False)]


# -- never when running, never when closed, never twice ----------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
def test_close_while_running_raises_and_keeps_resources(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """Closing a running loop raises as usual, releases nothing, and the resource stays usable."""
    t = rec.template("t")

    async def main() -> Res:
        loop = asyncio.get_running_loop()
        r = await t.acquire()
        with pytest.raises(RuntimeError):
            loop.close()
        assert rec.calls == []
        assert not loop.is_closed()
        assert await t.acquire() is r
        assert stats().resources_live == {"t": 1}
        return r

    loop = factory()
    r = loop.run_until_complete(main())
    assert rec.calls == []
    loop.close()
    assert [(c.resource, c.kind, c.on_own_loop) for c in rec.calls] == [(r, "graceful", True)]


@pytest.mark.parametrize("factory", FACTORIES)
def test_close_twice_releases_once(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """A second close() is a no-op: nothing is released again."""
    t = rec.template("t")
    loop = factory()
    loop.run_until_complete(t.acquire())
    loop.close()
    loop.close()
    assert len(rec.calls) == 1
    assert stats().graceful_releases == 1


@pytest.mark.parametrize("factory", FACTORIES)
def test_hook_does_nothing_on_an_already_closed_loop(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """A loop closed behind the hook's back is left to the reaper: forced, exactly once."""
    t = rec.template("t")
    loop = factory()
    r = loop.run_until_complete(t.acquire())
    type(loop).close(loop)  # bypass the instance hook
    loop.close()  # the hook now sees a closed loop
    assert rec.calls == []
    assert stats().resources_live == {"t": 1}
    with pytest.warns(ForcedReleaseWarning, match="'t'"):
        reap()
    assert [(c.resource, c.kind) for c in rec.calls] == [(r, "forced")]
    assert stats().loops_tracked == 0


@pytest.mark.parametrize("factory", FACTORIES)
def test_never_wraps_twice(factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder) -> None:
    """Later acquisitions, other templates and acquiring again after a release keep one wrapper."""
    first, second = rec.template("first"), rec.template("second")
    loop = factory()
    loop.run_until_complete(first.acquire())
    hook = vars(loop)["close"]
    loop.run_until_complete(second.acquire())
    loop.run_until_complete(first.acquire())
    assert vars(loop)["close"] is hook

    async def release_both() -> None:
        await first.release()
        await second.release()

    loop.run_until_complete(release_both())
    loop.run_until_complete(first.acquire())
    assert vars(loop)["close"] is hook
    loop.close()
    assert vars(loop)["close"] is hook
    assert [c.kind for c in rec.calls] == ["graceful"] * 3


def test_never_wraps_twice_after_the_state_was_discarded(rec: Recorder) -> None:
    """A loop reaped as abandoned and then used again is tracked anew with the same wrapper."""
    t = rec.template("t")
    loop, _ = abandon(t)
    hook = vars(loop)["close"]
    reap()  # abandoned: released on the loop, state discarded
    assert [(c.kind, c.on_own_loop) for c in rec.calls] == [("graceful", True)]
    assert stats().loops_tracked == 0
    loop.run_until_complete(t.acquire())
    assert stats().loops_tracked == 1
    assert vars(loop)["close"] is hook
    loop.close()
    assert [(c.kind, c.on_own_loop) for c in rec.calls] == [("graceful", True)] * 2


@pytest.mark.parametrize("factory", FACTORIES)
def test_chains_with_an_earlier_instance_wrapper(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """Someone else's close wrapper installed first is still called, exactly once, after ours."""
    t = rec.template("t")
    loop = factory()
    original = loop.close

    def their_close() -> None:
        rec.events.append("their close")
        original()

    loop.close = their_close  # type: ignore[method-assign]
    loop.run_until_complete(t.acquire())
    assert vars(loop)["close"] is not their_close  # ours wraps theirs
    loop.close()
    assert rec.events == ["release t", "their close"]
    assert loop.is_closed()
    loop.close()
    assert rec.events == ["release t", "their close", "their close"]
    assert len(rec.calls) == 1


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_later_wrapper_around_ours_still_releases(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """A wrapper installed after ours (asyncio-atexit style) calls ours, which releases."""
    t = rec.template("t")
    loop = factory()
    loop.run_until_complete(t.acquire())
    ours = loop.close

    def their_close() -> None:
        rec.events.append("their close")
        ours()

    loop.close = their_close  # type: ignore[method-assign]
    loop.close()
    assert rec.events == ["their close", "release t"]
    assert loop.is_closed()


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_no_reference_cycle(
    factory: Callable[[], asyncio.AbstractEventLoop], sync: bool, rec: Recorder
) -> None:
    """A hooked loop whose resource does not refer to it dies by refcount alone after close."""
    t = rec.template("t", hold_loop=False, sync=sync)
    gc.collect()
    gc.disable()
    try:
        loop = factory()
        loop.run_until_complete(t.acquire())
        assert _closehook.is_close_hook(vars(loop)["close"])
        loop.close()
        probe = weakref.ref(loop)
        del loop
        assert probe() is None, gc.get_referrers(probe())
    finally:
        gc.enable()
    assert len(rec.calls) == 1


# -- fallbacks where close cannot be wrapped ---------------------------------------------------


class RefusingLoop(asyncio.SelectorEventLoop):
    """A loop class that refuses to have ``close`` replaced on its instances."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "close":
            raise AttributeError("close is read-only on this loop")
        super().__setattr__(name, value)


class PropertyLoop(asyncio.SelectorEventLoop):
    """A loop class whose ``close`` is a read-only property."""

    @property
    def close(self) -> Callable[[], None]:
        return super().close


UNWRAPPABLE = [
    pytest.param(RefusingLoop, id="setattr-refuses"),
    pytest.param(PropertyLoop, id="property"),
]


def _run_like_asyncio_run(main: Main, factory: Callable[[], asyncio.AbstractEventLoop]) -> Any:
    """What asyncio.run/Runner do with a custom loop factory (done by hand on 3.10)."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())
    else:  # pragma: no cover - 3.10
        loop = factory()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


@pytest.mark.parametrize("factory", UNWRAPPABLE)
def test_asyncgen_fallback_releases_gracefully_in_shutdown_asyncgens(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """Where close cannot be wrapped, shutdown_asyncgens() releases on the loop, with no warning."""
    first, second = rec.template("first"), rec.template("second")

    async def main() -> tuple[Res, Res]:
        loop = asyncio.get_running_loop()
        a, b = await first.acquire(), await second.acquire()
        state = registry.get(loop)
        assert state is not None
        assert state.hook == "asyncgen"
        assert "close" not in vars(loop)
        rec.events.append("body done")
        return a, b

    a, b = _run_like_asyncio_run(main, factory)
    assert rec.events == ["body done", "release second", "release first"]
    assert [c.resource for c in rec.calls] == [b, a]
    assert all(c.kind == "graceful" and c.on_own_loop and not c.loop_closed for c in rec.calls)
    assert stats().loops_tracked == 0
    reap()
    assert len(rec.calls) == 2


@pytest.mark.parametrize("factory", UNWRAPPABLE)
def test_reaper_is_the_last_resort(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """Unwrappable and closed without shutdown_asyncgens(): the reaper releases forcefully."""
    t = rec.template("t")
    loop = factory()
    r = loop.run_until_complete(t.acquire())
    loop.close()
    assert rec.calls == []
    with pytest.warns(ForcedReleaseWarning, match="'t'") as record:
        reap()
    assert [type(w.message) for w in record] == [ForcedReleaseWarning]
    assert [(c.resource, c.kind) for c in rec.calls] == [(r, "forced")]
    assert stats().loops_tracked == 0
    reap()
    assert len(rec.calls) == 1


# -- bounded, failure-proof ------------------------------------------------------------------


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("stubborn", [False, True], ids=["cancellable", "ignores-cancel"])
def test_hanging_release_does_not_hang_close(
    factory: Callable[[], asyncio.AbstractEventLoop], stubborn: bool
) -> None:
    """A release past release_timeout is abandoned: warning, force_release_func, close returns."""
    resourceloop.configure(release_timeout=0.2)
    forced: list[object] = []
    others: list[object] = []

    async def hang(r: object) -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not stubborn:
                    raise

    hanging = ResourceTemplate(object, hang, name="hanging", force_release_func=forced.append)
    fine = ResourceTemplate(object, others.append, name="fine")

    async def main() -> tuple[object, object]:
        return await fine.acquire(), await hanging.acquire()

    loop = factory()
    f, h = loop.run_until_complete(main())
    with pytest.warns(ReleaseTimeoutWarning, match="'hanging'") as record:
        loop.close()
    assert [type(w.message) for w in record] == [ReleaseTimeoutWarning]
    assert loop.is_closed()
    assert forced == [h]
    assert others == [f]
    snap = stats()
    assert (snap.release_timeouts, snap.forced_releases, snap.graceful_releases) == (1, 1, 1)
    assert snap.loops_tracked == 0


@pytest.mark.parametrize("factory", FACTORIES)
def test_failing_release_is_logged_and_others_still_run(
    factory: Callable[[], asyncio.AbstractEventLoop],
    rec: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A release that raises is logged; the others still run; close() does not raise."""
    good = rec.template("good")
    bad_async = rec.template("bad-async", fail=True)
    bad_sync = rec.template("bad-sync", fail=True, sync=True)
    loop = factory()

    async def main() -> None:
        for t in (good, bad_async, bad_sync):
            await t.acquire()

    loop.run_until_complete(main())
    with caplog.at_level(logging.ERROR, logger="resourceloop"):
        loop.close()
    assert loop.is_closed()
    assert rec.events == ["release bad-sync", "release bad-async", "release good"]
    assert all(c.kind == "graceful" and c.on_own_loop for c in rec.calls)
    failed = sorted(r.getMessage() for r in caplog.records if r.name == "resourceloop")
    assert len(failed) == 2
    assert "'bad-async'" in failed[0]
    assert "'bad-sync'" in failed[1]
    snap = stats()
    assert (snap.release_failures, snap.graceful_releases, snap.loops_tracked) == (2, 1, 0)


def test_closed_from_inside_another_running_loop(rec: Recorder) -> None:
    """Closing an idle loop from a coroutine of another loop still releases, exactly once."""
    t = rec.template("t")
    other, _ = abandon(t)

    async def main() -> None:
        other.close()

    asyncio.run(main())
    assert other.is_closed()
    assert [(c.kind, c.on_own_loop, c.loop_closed) for c in rec.calls] == [
        ("graceful", True, False)
    ]
    assert stats().loops_tracked == 0


def test_no_warning_on_the_graceful_paths(rec: Recorder) -> None:
    """The close hook handles a loop per call silently (Flask-style churn prints nothing)."""
    t = rec.template("t")

    async def main() -> None:
        await t.acquire()

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(20):
            asyncio.run(main())
    assert [w for w in record if issubclass(w.category, ResourceLoopWarning)] == []
    assert len(rec.calls) == 20


# -- what closing finishes -------------------------------------------------------------------


def _frame(watcher: Any) -> object:
    """The watcher's frame: ``None`` once the async generator has finished."""
    return watcher.ag_frame


def test_close_fails_a_queued_cross_thread_acquisition_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An acquisition queued from another thread fails when its loop closes, without a poll."""
    # With the liveness poll out of the way, only the close hook can end the waiter.
    monkeypatch.setattr(_crossthread, "_REMOTE_LIVENESS_CHECK", 3600)
    t: ResourceTemplate[Any] = ResourceTemplate(object, name="t")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(t.acquire())
    loop.run_until_complete(t.release())  # tracked, holding nothing
    inside, queued = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        inside.set()
        queued.wait(30)
        loop.stop()  # the queued acquisition never runs: the loop stops, then closes

    def owner() -> None:
        loop.call_soon(hold_the_loop)
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=owner)
    thread.start()
    assert inside.wait(30)

    async def remote() -> BaseException | None:
        task = asyncio.ensure_future(t.acquire(loop))
        state = registry.get(loop)
        assert state is not None
        for _ in range(100):
            if state.remote:
                break
            await asyncio.sleep(0)
        assert state.remote
        queued.set()
        try:
            await asyncio.wait_for(task, 30)
        except BaseException as exc:
            return exc
        return None  # pragma: no cover - the failure this test guards against

    failure = asyncio.run(remote())
    thread.join(30)
    gc.collect()
    assert isinstance(failure, LoopClosedError), failure
    assert loop.is_closed()
    assert stats().loops_tracked == 0


def test_fail_remote_waiters_leaves_finished_ones_alone() -> None:
    """Only calls still waiting get the error (and never start); a finished one keeps its result."""
    t: ResourceTemplate[Any] = ResourceTemplate(object, name="t")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(t.acquire())
    state = registry.get(loop)
    assert state is not None
    caller = asyncio.new_event_loop()

    async def work() -> str:  # pragma: no cover - neither call may start
        return "ran"

    finished = RemoteCall("finished", work, caller, caller.create_future())
    finished.answer.set_result("done")
    waiting = RemoteCall("cannot acquire 't'", work, caller, caller.create_future())
    state.remote = {finished, waiting}
    loop.close()
    caller.run_until_complete(asyncio.sleep(0))  # the answers arrive by call_soon_threadsafe
    assert finished.answer.result() == "done"
    error = waiting.answer.exception()
    assert isinstance(error, LoopClosedError)
    assert str(error).startswith("cannot acquire 't': ")
    assert "closed before the call finished" in str(error)
    waiting.start()  # queued on a loop that closed: it never runs
    assert waiting.task is None
    assert state.remote == set()
    caller.close()


@pytest.mark.parametrize("factory", UNWRAPPABLE)
def test_asyncgen_watcher_is_finished_when_the_reaper_releases(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """A loop closed without shutdown_asyncgens(): the reaper ends our watcher, none is left."""
    t = rec.template("t")
    loop = factory()
    loop.run_until_complete(t.acquire())
    state = registry.get(loop)
    assert state is not None
    watcher = state.asyncgen_hook
    assert watcher is not None
    assert _frame(watcher) is not None  # suspended at its yield, registered with the loop
    loop.close()
    with pytest.warns(ForcedReleaseWarning):
        reap()
    assert state.asyncgen_hook is None
    assert _frame(watcher) is None  # finished, so the loop's finalizer has nothing to run
    assert [c.kind for c in rec.calls] == ["forced"]


@pytest.mark.parametrize("factory", UNWRAPPABLE)
def test_asyncgen_watcher_finishes_in_shutdown_asyncgens(
    factory: Callable[[], asyncio.AbstractEventLoop], rec: Recorder
) -> None:
    """shutdown_asyncgens() runs the watcher's release; the state is then untracked."""
    t = rec.template("t")
    loop = factory()
    loop.run_until_complete(t.acquire())
    state = registry.get(loop)
    assert state is not None
    watcher = state.asyncgen_hook
    assert watcher is not None
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert [c.kind for c in rec.calls] == ["graceful"]
    assert _frame(watcher) is None
    assert state.asyncgen_hook is None
    assert state.phase is GONE
    assert registry.get(loop) is None
    loop.close()
    reap()
    assert len(rec.calls) == 1


def test_close_from_another_loop_releases_in_a_daemon_helper(rec: Recorder) -> None:
    """From inside another running loop, the release runs in a daemon helper thread, joined."""
    seen: list[tuple[str, bool]] = []

    async def release(r: object) -> None:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon))

    t: ResourceTemplate[Any] = ResourceTemplate(object, release, name="t")
    other, _ = abandon(t)

    async def main() -> None:
        other.close()
        assert seen == [("resourceloop-release", True)]  # done before close() returned

    asyncio.run(main())
    assert other.is_closed()


def test_close_releases_what_a_cancelled_manager_exit_left_along_with_the_rest() -> None:
    """A manager exit cancelled mid-release leaves the releases not begun in custody; a later
    close() with other resources live releases those on the loop too, not forcefully."""
    released: list[str] = []
    forced: list[str] = []

    async def record(res: str) -> None:
        released.append(res)

    async def cancelled(res: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the task leaving the manager is cancelled, mid-release
        await asyncio.sleep(0)

    older = ResourceTemplate(
        lambda: "older", record, name="older", force_release_func=forced.append
    )
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
        # Made after the manager (which acquires every template): live, outside any manager.
        extra = ResourceTemplate(
            lambda: "extra", record, name="extra", force_release_func=forced.append
        )
        loop.run_until_complete(extra.acquire())
        assert stats().resources_live == {"older": 1, "extra": 1}
        loop.close()
    assert sorted(released) == ["extra", "older"]
    assert forced == ["newer"]
    assert stats().resources_live == {}


def test_close_from_another_loop_waits_as_long_as_its_creations_may_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The helper's join covers the resources held and the creations in flight on the loop.

    ``release_on_loop`` may take ``(held + creations + 1) * (release_timeout + grace)``; a
    shorter join would let the real close run while the helper still runs the loop.
    """
    from resourceloop import _config
    from resourceloop._loop_run import run_elsewhere
    from resourceloop._release import grace

    async def never() -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    held = ResourceTemplate(object, name="held")
    makers = [ResourceTemplate(never, name=f"creating{i}") for i in range(3)]
    other = asyncio.new_event_loop()
    other.run_until_complete(held.acquire())
    creations = [other.create_task(m.acquire()) for m in makers]
    other.run_until_complete(asyncio.sleep(0))  # each creation starts, and waits
    state = registry.get(other)
    assert state is not None
    assert len(state.pending) == 3
    joins: list[float] = []

    def recording(target: Callable[[], None], *, timeout: float) -> None:
        joins.append(timeout)
        run_elsewhere(target, timeout=timeout)

    monkeypatch.setattr(_lifecycle, "run_elsewhere", recording)

    async def main() -> None:
        other.close()

    asyncio.run(main())
    assert other.is_closed()
    assert all(c.done() for c in creations)
    for creation in creations:
        if not creation.cancelled():
            creation.exception()  # retrieved: no "never retrieved" report
    timeout = _config.current().release_timeout
    assert len(joins) == 1
    assert joins[0] >= (1 + 3 + 1) * (timeout + grace(timeout))
    assert stats().resources_live == {}
    assert stats().graceful_releases == 1


@pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning")
def test_a_dropped_unclosed_loop_is_still_closed_by_its_finalizer() -> None:
    """asyncio's ``__del__`` closes a dropped loop through our wrapper: its self-pipe closes."""
    t: ResourceTemplate[Any] = ResourceTemplate(object, name="t")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(t.acquire())
    loop.run_until_complete(t.release())  # still tracked and hooked, holding nothing
    assert "close" in vars(loop)
    csock = loop._csock  # type: ignore[attr-defined]
    assert csock.fileno() != -1
    del loop
    gc.collect()
    try:
        assert csock.fileno() == -1  # the real close ran, though our weak reference had died
    finally:
        csock.close()


@pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning")
def test_a_dropped_loop_holding_a_resource_is_still_closed_by_its_finalizer() -> None:
    """A dropped unclosed loop whose resource does not refer to it closes for real when
    collected (its self-pipe closes), and the next pass forces the resource.
    """
    forced: list[object] = []
    t = ResourceTemplate(object, name="t", force_release_func=forced.append)
    loop = asyncio.new_event_loop()
    r = loop.run_until_complete(t.acquire())
    csock = loop._csock  # type: ignore[attr-defined]
    del loop
    gc.collect()
    try:
        assert csock.fileno() == -1
    finally:
        csock.close()
    with pytest.warns(ForcedReleaseWarning, match="garbage-collected before anything released"):
        reap()
    assert forced == [r]
    assert stats().resources_live == {}


def test_release_bound_covers_every_release_and_one_more() -> None:
    """release_bound(n) is (n + 1) times one release's timeout plus its grace."""
    resourceloop.configure(release_timeout=4.0)
    assert _release.grace(4.0) == 0.5  # min(4.0 * 0.25, 0.5)
    assert _release.grace(1.0) == 0.25
    assert _release.release_bound(0) == 1 * 4.5
    assert _release.release_bound(3) == 4 * 4.5


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


def test_install_close_hook_says_whether_it_wrapped() -> None:
    """True once wrapped (and again, without wrapping twice); False where it cannot wrap."""
    loop = asyncio.new_event_loop()
    refusing, no_dict = RefusingLoop(), NoDictLoop()
    loops: list[asyncio.SelectorEventLoop] = [loop, refusing, no_dict]  # type: ignore[list-item]
    try:
        assert _closehook.install_close_hook(loop) is True
        wrapper = vars(loop)["close"]
        assert _closehook.install_close_hook(loop) is True
        assert vars(loop)["close"] is wrapper
        assert _closehook.install_close_hook(refusing) is False
        assert _closehook.install_close_hook(no_dict) is False
    finally:
        for each in loops:
            asyncio.SelectorEventLoop.close(each)


def test_install_asyncgen_hook_only_on_the_running_loop() -> None:
    """The watcher starts only on this thread's running loop; otherwise it says False."""
    loop = asyncio.new_event_loop()
    state, _ = registry.add(loop, "idle")
    try:
        assert _closehook.install_asyncgen_hook(loop, state) is False

        async def from_another_loop() -> bool:  # its hooks are set: still not our loop
            return _closehook.install_asyncgen_hook(loop, state)

        assert asyncio.run(from_another_loop()) is False
        assert state.asyncgen_hook is None
    finally:
        registry.discard(state)
        loop.close()


def test_ctrl_c_before_the_hook_s_release_run_starts_leaves_no_coroutine(rec: Recorder) -> None:
    """KeyboardInterrupt as the close hook starts its run: all forced, nothing left unawaited.

    The signal lands before the release task's first step, so its coroutine never starts;
    it is closed rather than left for the garbage collector to report as never awaited.
    """
    interrupt = [True]

    class InterruptedRun(asyncio.SelectorEventLoop):
        def run_until_complete(self, future: Any) -> Any:
            if interrupt and not self.is_closed():
                interrupt.clear()
                raise KeyboardInterrupt  # as a signal would, before anything ran
            return super().run_until_complete(future)

    t = rec.template("t")
    loop = InterruptedRun()
    interrupt.clear()
    loop.run_until_complete(t.acquire())
    interrupt.append(True)
    with record_text() as warned:
        with pytest.raises(KeyboardInterrupt), pytest.warns(ForcedReleaseWarning):
            loop.close()
        gc.collect()
    assert loop.is_closed()
    assert [c.kind for c in rec.calls] == ["forced"]
    assert [w.message for w in warned if "never awaited" in w.message] == []
    assert stats().resources_live == {}


def test_ctrl_c_during_a_close_release_leaves_no_unretrieved_task_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real SIGINT inside a release run by the close hook: the interrupt reaches close()'s
    caller, the loop is closed, and no task of ours is left for asyncio to report later."""
    import signal

    async def release(r: object) -> None:
        signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt at the next bytecode
        await asyncio.sleep(0)  # pragma: no cover - interrupted before

    t = ResourceTemplate(object, release, name="sigint", force_release_func=lambda r: None)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(t.acquire())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForcedReleaseWarning)
            with pytest.raises(KeyboardInterrupt):
                loop.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert loop.is_closed()
    assert stats().resources_live == {}
    del loop
    gc.collect()
    never_retrieved = [
        r for r in caplog.records if r.name == "asyncio" and "never retrieved" in r.getMessage()
    ]
    assert never_retrieved == []
