"""Tests for `resourceloop.ResourceManager`: the context manager and decorator forms.

The templates are the shared recorder's (the ``rec`` fixture), with ``yields=True``: their
acquisitions and releases await before they act, so the manager must really await them;
``keep=True`` where a test reads the acquired resources themselves (``rec.acquired``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import resourceloop
from resourceloop import (
    ResourceManager,
    ResourceTemplate,
    resource_managed_loops,
    resource_manager,
)
from resourceloop._compat import ExceptionGroup
from resourceloop.warnings import (
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    ResourceLoopWarning,
    UngracefulLoopWarning,
)
from tests._fakes import Recorder, Res
from tests._loops import LOOP_FACTORIES, LoopFactory, run

# -- the two forms -----------------------------------------------------------------------------


@pytest.mark.parametrize("factory", LOOP_FACTORIES)
def test_context_manager_acquires_eagerly_and_releases_on_exit(
    rec: Recorder, factory: LoopFactory
) -> None:
    """Entering acquires the non-lazy templates; leaving releases all, newest first, on the loop."""
    eager_one = rec.template("t-eager-1", yields=True, keep=True)
    eager_two = rec.template("t-eager-2", yields=True, keep=True)
    lazy = rec.template("t-lazy", lazy=True, yields=True, keep=True)
    rec.template("t-lazy-unused", lazy=True, yields=True, keep=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert loop not in resource_managed_loops
        async with resource_manager() as manager:
            assert isinstance(manager, ResourceManager)
            assert manager.loop is loop
            assert loop in resource_managed_loops
            assert resourceloop.stats().loops_managed == 1
            assert rec.names("acquired") == ["t-eager-1", "t-eager-2"]
            assert all(fake.loop is loop for fake in rec.acquired)
            first = rec.acquired[0]
            assert await eager_one.acquire() is first
            await lazy.acquire()
            assert rec.released == []
        assert loop not in resource_managed_loops
        assert resourceloop.stats().loops_managed == 0
        assert rec.names() == ["t-lazy", "t-eager-2", "t-eager-1"]
        assert all(call.loop is loop for call in rec.released)
        # After the manager, the loop acquires afresh (released then by the close hook).
        assert await eager_two.acquire() is not rec.acquired[1]

    run(main, factory)
    assert "t-lazy-unused" not in rec.names("acquired")
    assert rec.names().count("t-eager-2") == 2


def test_decorator_form_keeps_name_doc_and_signature(rec: Recorder) -> None:
    """as_decorator wraps each call in a fresh manager and keeps the function's metadata."""
    rec.template("t-eager", yields=True)
    seen: list[bool] = []

    async def handler(user: int, *, verbose: bool = False) -> str:
        """Handle one request."""
        seen.append(asyncio.get_running_loop() in resource_managed_loops)
        assert rec.names("acquired")[-1] == "t-eager"
        return f"user {user} verbose={verbose}"

    decorated = resource_manager.as_decorator(handler)
    assert decorated.__name__ == "handler"
    assert decorated.__qualname__ == handler.__qualname__
    assert decorated.__doc__ == "Handle one request."
    assert inspect.signature(decorated) == inspect.signature(handler)
    assert inspect.iscoroutinefunction(decorated)
    assert decorated.__wrapped__ is handler  # type: ignore[attr-defined]

    async def main() -> None:
        assert await decorated(1) == "user 1 verbose=False"
        assert asyncio.get_running_loop() not in resource_managed_loops
        assert await decorated(2, verbose=True) == "user 2 verbose=True"

    run(main)
    assert seen == [True, True]
    # Two calls, two managers: created and released twice.
    assert rec.names("acquired") == ["t-eager", "t-eager"]
    assert rec.names() == ["t-eager", "t-eager"]


def test_decorator_releases_when_the_function_raises(rec: Recorder) -> None:
    """The decorated function's exception propagates after the release."""
    rec.template("t-eager", yields=True)

    @ResourceManager.as_decorator
    async def handler() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        run(handler)
    assert rec.names() == ["t-eager"]


def _sync_function() -> None:
    pass


async def _async_generator() -> AsyncIterator[None]:
    yield


async def _coroutine() -> None:
    pass


@pytest.mark.parametrize(
    "func",
    [_sync_function, lambda: _coroutine(), _async_generator, print, ResourceManager],  # noqa: PLW0108
    ids=["sync-def", "lambda-returning-coroutine", "async-generator", "builtin", "class"],
)
def test_as_decorator_rejects_non_coroutine_functions(func: Callable[..., Any]) -> None:
    """Only ``async def`` functions can be decorated."""
    with pytest.raises(TypeError, match="async def"):
        resource_manager.as_decorator(func)


def test_explicit_acquire_and_release(rec: Recorder) -> None:
    """acquire() and release() are the explicit __aenter__ and __aexit__."""
    rec.template("t-eager", yields=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        manager = ResourceManager()
        assert await manager.acquire() is manager
        assert loop in resource_managed_loops
        assert rec.names("acquired") == ["t-eager"]
        await manager.release()
        assert loop not in resource_managed_loops
        assert rec.names() == ["t-eager"]

    run(main)


def test_explicit_release_raises_release_failures_together(rec: Recorder) -> None:
    """release() raises the failures of the releases as an ExceptionGroup."""
    rec.template("t-broken", fail_release=OSError("broken"), yields=True)

    async def main() -> None:
        manager = ResourceManager()
        await manager.acquire()
        with pytest.raises(ExceptionGroup) as info:
            await manager.release()
        assert [type(e) for e in info.value.exceptions] == [OSError]
        assert asyncio.get_running_loop() not in resource_managed_loops

    run(main)


def test_properties_and_repr() -> None:
    """``loop`` is set on entry (RuntimeError before); ``exist_ok`` is what was given."""
    manager = ResourceManager()
    assert manager.exist_ok is False
    assert ResourceManager(exist_ok=True).exist_ok is True
    with pytest.raises(RuntimeError, match="not been entered"):
        _ = manager.loop
    assert "active=False" in repr(manager)

    async def main() -> asyncio.AbstractEventLoop:
        async with manager:
            assert manager.loop is asyncio.get_running_loop()
            assert "active=True" in repr(manager)
        return asyncio.get_running_loop()

    loop = run(main)
    assert manager.loop is loop  # still the loop it managed


def test_resource_managed_loops_is_a_live_read_only_set() -> None:
    """The view lists the managed loops while they are managed, and nothing else."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert len(resource_managed_loops) == 0
        async with resource_manager():
            assert set(resource_managed_loops) == {loop}
            assert len(resource_managed_loops) == 1
            assert object() not in resource_managed_loops
            assert repr(loop) in repr(resource_managed_loops)
        assert set(resource_managed_loops) == set()
        assert not hasattr(resource_managed_loops, "add")

    run(main)


# -- nesting -----------------------------------------------------------------------------------


def test_nested_manager_without_exist_ok_raises_and_outer_keeps_working(rec: Recorder) -> None:
    """A second manager on a managed loop is a RuntimeError; the outer one is unaffected."""
    template = rec.template("t-eager", yields=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with resource_manager() as outer:
            resource = await template.acquire()
            body_ran = False
            with pytest.raises(RuntimeError, match="exist_ok=True"):
                async with resource_manager():
                    body_ran = True
            assert not body_ran
            with pytest.raises(RuntimeError, match="already active"):
                await outer.acquire()  # the same instance cannot be entered twice
            assert loop in resource_managed_loops
            assert rec.released == []
            assert await template.acquire() is resource
        assert loop not in resource_managed_loops
        assert rec.names() == ["t-eager"]

    run(main)


def test_nested_manager_with_exist_ok_does_nothing(rec: Recorder) -> None:
    """With exist_ok=True inside a managed loop, entry and exit are no-ops."""
    template = rec.template("t-eager", yields=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with resource_manager():
            resource = await template.acquire()
            async with resource_manager(exist_ok=True) as inner:
                assert inner.exist_ok
                assert rec.names("acquired") == ["t-eager"]
            assert rec.released == []
            assert loop in resource_managed_loops
            assert await template.acquire() is resource
        assert rec.names() == ["t-eager"]

    run(main)


def test_exist_ok_without_an_outer_manager_manages_the_loop(rec: Recorder) -> None:
    """exist_ok=True on an unmanaged loop is an ordinary manager."""
    rec.template("t-eager", yields=True)

    @resource_manager.as_decorator
    async def inner() -> None:
        async with resource_manager(exist_ok=True):  # nested: a no-op
            assert rec.names("acquired") == ["t-eager", "t-eager"]

    async def main() -> None:
        async with resource_manager(exist_ok=True):
            assert asyncio.get_running_loop() in resource_managed_loops
        assert rec.names() == ["t-eager"]
        await inner()

    run(main)
    assert rec.names() == ["t-eager", "t-eager"]


def test_manager_instance_can_be_entered_again_after_exit(rec: Recorder) -> None:
    """One instance may manage the loop again once it has left."""
    rec.template("t-eager", yields=True)
    manager = ResourceManager()

    async def main() -> None:
        async with manager:
            pass
        async with manager:
            assert asyncio.get_running_loop() in resource_managed_loops

    run(main)
    assert rec.names() == ["t-eager", "t-eager"]


# -- order and failures ------------------------------------------------------------------------


def test_release_order_is_reverse_of_acquisition(rec: Recorder) -> None:
    """Exit releases newest first, counting lazy and re-acquired resources where they came."""
    first = rec.template("t-first", yields=True)
    rec.template("t-second", yields=True)
    lazy = rec.template("t-lazy", lazy=True, yields=True)

    async def main() -> None:
        async with resource_manager():
            await lazy.acquire()
            await first.release()  # released in the body, then acquired again: now newest
            assert rec.names() == ["t-first"]
            await first.acquire()
        assert rec.names() == ["t-first", "t-first", "t-lazy", "t-second"]

    run(main)


def test_failing_releases_never_stop_the_others_and_are_raised_together(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Every release is attempted; the failures come out as one ExceptionGroup, and are logged."""
    rec.template("t-ok-1", yields=True)
    rec.template("t-bad-1", fail_release=ValueError("bad one"), yields=True)
    rec.template("t-ok-2", yields=True)
    rec.template("t-bad-2", fail_release=KeyError("bad two"), yields=True)

    async def main() -> None:
        async with resource_manager():
            pass

    with (
        caplog.at_level(logging.ERROR, logger="resourceloop"),
        pytest.raises(ExceptionGroup) as info,
    ):
        run(main)
    assert rec.names() == ["t-bad-2", "t-ok-2", "t-bad-1", "t-ok-1"]
    assert [type(e) for e in info.value.exceptions] == [KeyError, ValueError]
    assert "2 resource release(s) failed" in str(info.value)
    logged = [r.getMessage() for r in caplog.records if r.name == "resourceloop"]
    assert any("'t-bad-1'" in message for message in logged)
    assert any("'t-bad-2'" in message for message in logged)
    stats = resourceloop.stats()
    assert stats.release_failures == 2
    assert stats.resources_live == {}


def test_body_exception_wins_over_release_failures(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """If the body raised, release failures are logged and the body's exception propagates."""
    rec.template("t-ok", yields=True)
    rec.template("t-bad", fail_release=ValueError("release failed"), yields=True)

    async def main() -> None:
        async with resource_manager():
            raise LookupError("the body failed")

    with (
        caplog.at_level(logging.ERROR, logger="resourceloop"),
        pytest.raises(LookupError, match="the body failed") as info,
    ):
        run(main)
    assert not isinstance(info.value, ExceptionGroup)
    assert rec.names() == ["t-bad", "t-ok"]
    failures = [r for r in caplog.records if r.name == "resourceloop"]
    assert len(failures) == 1
    assert "'t-bad'" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is ValueError
    assert resourceloop.stats().release_failures == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_acquire_failure_on_enter_releases_what_was_acquired(rec: Recorder, kind: str) -> None:
    """If an eager acquisition fails, the ones before it are released and the loop unmarked."""
    rec.template("t-before", yields=True)
    broken = True

    def sync_acquire() -> Res:
        if broken:
            raise ConnectionRefusedError("no database")
        return Res(asyncio.get_running_loop(), hold_loop=True, name="t-broken")

    async def async_acquire() -> Res:
        await asyncio.sleep(0)
        return sync_acquire()

    keep = ResourceTemplate(sync_acquire if kind == "sync" else async_acquire, name="t-broken")
    rec.template("t-after", yields=True)

    async def main() -> None:
        nonlocal broken
        loop = asyncio.get_running_loop()
        with pytest.raises(ConnectionRefusedError, match="no database"):
            async with resource_manager():
                pytest.fail("the body must not run")
        assert loop not in resource_managed_loops
        assert rec.names("acquired") == ["t-before"]
        assert rec.names() == ["t-before"]
        assert resourceloop.stats().resources_live == {}
        broken = False
        async with resource_manager():
            assert await keep.acquire() is not None
        assert rec.names() == ["t-before", "t-after", "t-before"]

    run(main)


def test_hanging_release_is_bounded_by_release_timeout(rec: Recorder) -> None:
    """A release that never ends is abandoned after release_timeout and forced, with a warning."""
    resourceloop.configure(release_timeout=0.2)
    forced: list[Res] = []
    cancelled: asyncio.Event | None = None

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=True, name="t-hanging")

    async def hang(fake: Res) -> None:
        assert cancelled is not None
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hanging = ResourceTemplate(acquire, hang, name="t-hanging", force_release_func=forced.append)
    rec.template("t-ok", yields=True)

    async def main() -> None:
        nonlocal cancelled
        cancelled = asyncio.Event()
        async with resource_manager():
            resource = await hanging.acquire()
        assert forced == [resource]
        await cancelled.wait()  # the abandoned release was cancelled on the loop

    with pytest.warns(ReleaseTimeoutWarning, match=r"'t-hanging'.*release_timeout=0\.2"):
        run(main)
    assert rec.names() == ["t-ok"]
    stats = resourceloop.stats()
    assert stats.release_timeouts == 1
    assert stats.forced_releases == 1
    assert stats.release_failures == 0


def test_release_ignoring_cancellation_is_still_bounded(rec: Recorder) -> None:
    """A release that swallows its cancellation cannot hold up the manager's exit either."""
    resourceloop.configure(release_timeout=0.2)
    forced: list[Res] = []
    gate: asyncio.Event | None = None

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=True, name="t-stubborn")

    async def stubborn(fake: Res) -> None:
        assert gate is not None
        try:
            await gate.wait()
        except asyncio.CancelledError:
            await gate.wait()  # ignores the cancellation and keeps going
        finished.append(fake)  # never reached: the abandoned release is closed

    finished: list[Res] = []
    template = ResourceTemplate(
        acquire, stubborn, name="t-stubborn", force_release_func=forced.append
    )

    async def main() -> None:
        nonlocal gate
        gate = asyncio.Event()
        async with resource_manager():
            await template.acquire()
        assert len(forced) == 1
        # Nothing of ours is left on the loop: asyncio.run's shutdown would wait for it.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        gate.set()
        await asyncio.sleep(0)
        assert finished == []

    with pytest.warns(ReleaseTimeoutWarning, match="'t-stubborn'"):
        run(main)
    assert resourceloop.stats().release_timeouts == 1


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no Task.uncancel")
def test_a_cancel_arriving_while_a_release_overruns_still_cancels_the_task() -> None:
    """Our deadline cancels an overrunning release; a cancel from elsewhere meanwhile is kept.

    The release is forced, and the task leaving the manager ends cancelled at the manager's
    exit: the code after the ``async with`` does not run.
    """
    resourceloop.configure(release_timeout=0.05)
    forced: list[object] = []

    async def release(res: object) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # the deadline's
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # someone else's cancel, arriving meanwhile
            raise

    template = ResourceTemplate(object, release, name="t", force_release_func=forced.append)
    after: list[str] = []

    async def main() -> None:
        async with resource_manager():
            await template.acquire()
        after.append("ran")

    with pytest.warns(ResourceLoopWarning, match="'t'"), pytest.raises(asyncio.CancelledError):
        run(main)
    assert after == []
    assert len(forced) == 1
    snap = resourceloop.stats()
    assert (snap.forced_releases, snap.resources_live) == (1, {})


def test_cancelled_body_still_releases_everything(rec: Recorder) -> None:
    """Cancelling the task inside the manager releases every resource, then propagates."""
    rec.template("t-eager", yields=True)
    lazy = rec.template("t-lazy", lazy=True, yields=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        entered = asyncio.Event()

        async def work() -> None:
            async with resource_manager():
                await lazy.acquire()
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.ensure_future(work())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rec.names() == ["t-lazy", "t-eager"]
        assert loop not in resource_managed_loops
        assert resourceloop.stats().resources_live == {}

    run(main)


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="3.10 cannot tell it from a cancellation of the task"
)
def test_release_function_that_is_cancelled_counts_as_a_failure(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A release function that ends cancelled fails that release only; the rest go on."""
    rec.template("t-ok", yields=True)

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=True, name="t-cancelled")

    async def release(fake: Res) -> None:
        raise asyncio.CancelledError

    rec.templates.append(ResourceTemplate(acquire, release, name="t-cancelled"))

    async def main() -> None:
        with pytest.raises(ExceptionGroup) as info:
            async with resource_manager():
                pass
        # The caller itself was not cancelled: it carries on.
        await asyncio.sleep(0)
        (failure,) = info.value.exceptions
        assert isinstance(failure, RuntimeError)
        assert "'t-cancelled'" in str(failure)
        assert "cancelled" in str(failure)

    with caplog.at_level(logging.ERROR, logger="resourceloop"):
        run(main)
    assert rec.names() == ["t-ok"]
    assert resourceloop.stats().release_failures == 1


def test_cancelling_the_exit_is_prompt_and_loses_nothing(rec: Recorder) -> None:
    """Cancelling the manager's task mid-release returns at once; nothing is lost.

    The release in progress is cut short and forced; the ones not begun stay in custody and
    are released gracefully when the loop closes.
    """
    rec.template("t-first", yields=True)
    slow_started: asyncio.Event | None = None
    gate: asyncio.Event | None = None
    forced: list[Res] = []

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=True, name="t-slow")

    async def slow_release(fake: Res) -> None:
        assert gate is not None
        assert slow_started is not None
        slow_started.set()
        await gate.wait()
        rec.release(fake)

    # The newest template, so released first.
    rec.templates.append(
        ResourceTemplate(acquire, slow_release, name="t-slow", force_release_func=forced.append)
    )

    async def main() -> None:
        nonlocal gate, slow_started
        gate = asyncio.Event()
        slow_started = asyncio.Event()

        async def work() -> None:
            async with resource_manager():
                pass

        task = asyncio.ensure_future(work())
        await slow_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [fake.name for fake in forced] == ["t-slow"]
        assert rec.names() == []
        assert asyncio.get_running_loop() not in resource_managed_loops
        assert resourceloop.stats().resources_live == {"t-first": 1}  # still in custody

    with pytest.warns(ForcedReleaseWarning, match="'t-slow'.*interrupted"):
        run(main)
    assert rec.names() == ["t-first"]  # by the close hook, on the loop
    stats = resourceloop.stats()
    assert (stats.graceful_releases, stats.forced_releases, stats.release_failures) == (1, 1, 0)
    assert stats.resources_live == {}


def test_manager_needs_no_close_hook(
    rec: Recorder, record_warnings: list[warnings.WarningMessage]
) -> None:
    """With the close hook disabled, managed acquisitions warn about nothing."""
    resourceloop.configure(close_hook=False)
    lazy = rec.template("t-lazy", lazy=True, yields=True)

    @resource_manager.as_decorator
    async def main() -> None:
        await lazy.acquire()

    run(main)
    assert rec.names() == ["t-lazy"]
    assert [w for w in record_warnings if issubclass(w.category, UngracefulLoopWarning)] == []
    assert record_warnings == []


def test_managers_on_loops_of_several_threads_are_independent(rec: Recorder) -> None:
    """Each thread's loop is managed on its own: entering one does not mark the others."""
    rec.template("t-eager", yields=True, keep=True)
    barrier = threading.Barrier(4, timeout=30)
    seen: list[int] = []

    @resource_manager.as_decorator
    async def work() -> None:
        barrier.wait()  # every thread is inside its manager now
        seen.append(len(resource_managed_loops))
        barrier.wait()

    threads = [threading.Thread(target=asyncio.run, args=(work(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == [4, 4, 4, 4]
    assert len(resource_managed_loops) == 0
    loops = {fake.loop for fake in rec.acquired}
    assert len(loops) == 4
    assert {(c.resource.loop, c.loop) for c in rec.released} == {(loop, loop) for loop in loops}


# -- templates=: acquire only what the body uses --------------------------------------------------


def test_templates_acquires_only_the_given_ones_in_order(rec: Recorder) -> None:
    """With templates=, entry acquires those (lazy ones too), no other; exit releases all."""
    rec.template("t-eager-other", yields=True)
    lazy = rec.template("t-lazy", lazy=True, yields=True)
    engine = rec.template("t-engine", yields=True)
    extra = rec.template("t-extra", lazy=True, yields=True)

    async def main() -> None:
        async with ResourceManager(templates=[engine, lazy]) as manager:
            assert rec.names("acquired") == ["t-engine", "t-lazy"]
            assert manager.templates == (engine, lazy)
            await extra.acquire()  # acquired by the body: released on exit as well
        assert sorted(rec.names()) == ["t-engine", "t-extra", "t-lazy"]

    asyncio.run(main())
    assert "t-eager-other" not in rec.names("acquired")


def test_templates_on_the_decorator(rec: Recorder) -> None:
    """as_decorator(templates=...) gives each call a manager of those templates only."""
    rec.template("t-other", yields=True)
    engine = rec.template("t-engine", yields=True)

    @resource_manager.as_decorator(templates=(engine,))
    async def task(n: int) -> int:
        """A task."""
        assert asyncio.get_running_loop() in resource_managed_loops
        return n

    @resource_manager.as_decorator
    async def everything() -> None:
        pass

    assert task.__doc__ == "A task."
    assert asyncio.run(task(3)) == 3
    assert rec.names("acquired") == ["t-engine"]
    assert rec.names() == ["t-engine"]
    asyncio.run(everything())
    assert sorted(rec.names("acquired")) == ["t-engine", "t-engine", "t-other"]


def test_templates_empty_acquires_nothing(rec: Recorder) -> None:
    """templates=() manages the loop and acquires nothing up front."""
    rec.template("t-eager", yields=True)

    async def main() -> None:
        async with ResourceManager(templates=()):
            assert asyncio.get_running_loop() in resource_managed_loops

    asyncio.run(main())
    assert rec.names("acquired") == []


@pytest.mark.parametrize(
    "bad",
    ["t-engine", b"x", 3, [object()], "single template"],
)
def test_templates_rejects_what_is_not_templates(rec: Recorder, bad: object) -> None:
    """A clear TypeError at construction, for the manager and the decorator alike."""
    engine = rec.template("t-engine", yields=True)
    if bad == "single template":
        bad = engine
    with pytest.raises(TypeError, match="ResourceTemplate"):
        ResourceManager(templates=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"as_decorator\(templates=\.\.\.\)"):
        resource_manager.as_decorator(templates=bad)  # type: ignore[call-overload]


def test_templates_is_read_once(rec: Recorder) -> None:
    """A generator is materialized at construction, so every entry acquires the same ones."""
    engine = rec.template("t-engine", yields=True)
    manager = ResourceManager(templates=(t for t in [engine]))

    async def main() -> None:
        async with manager:
            pass
        async with manager:
            pass

    asyncio.run(main())
    assert rec.names("acquired") == ["t-engine", "t-engine"]
    assert "templates=['t-engine']" in repr(manager)
