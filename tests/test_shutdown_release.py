"""Releasing in the executor shutdown that ``asyncio.run`` and ``Runner`` run just before close.

``_closehook.install_shutdown_hook``: the releases run in that pass's task, before the default
executor shuts down, and the close hook then has nothing left to do. Called mid-life, from a
running loop, ``shutdown_default_executor`` releases nothing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, _closehook, resource_manager, stats
from tests._loops import needs_uvloop, uvloop
from tests._warnings import record_text

pytestmark = pytest.mark.usefixtures("slow_reaper")  # nothing here may depend on a pass


@pytest.fixture(autouse=True)
def _room_for_the_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap on every loop, from the first and on every Python (see the end for the rule)."""
    monkeypatch.setattr(_closehook, "_SHUTDOWN_FITS", True)


class Seen:
    """What each release saw: its resource, whether the executor was shut down, its task."""

    def __init__(self) -> None:
        self.created: list[object] = []
        self.released: list[tuple[object, bool, bool]] = []
        self.shutdowns: list[object] = []

    def template(
        self, name: str, release: Callable[[object], Coroutine[Any, Any, None]] | None = None
    ) -> ResourceTemplate[object]:
        def create() -> object:
            resource = object()
            self.created.append(resource)
            return resource

        async def record(resource: object) -> None:
            loop = asyncio.get_running_loop()
            self.released.append(
                (
                    resource,
                    bool(getattr(loop, "_executor_shutdown_called", False)),
                    asyncio.current_task() is not None,
                )
            )
            if release is not None:
                await release(resource)

        return ResourceTemplate(create, record, name=name)

    def watch_shutdowns(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count calls of the class's ``shutdown_default_executor`` on ``loop``."""
        cls = type(loop)
        original = cls.shutdown_default_executor

        def counting(this: Any, *args: Any, **kwargs: Any) -> Any:
            if this is loop:
                self.shutdowns.append(args)
            return original(this, *args, **kwargs)

        self._restore = (cls, original)
        setattr(cls, "shutdown_default_executor", counting)  # noqa: B010 - a test's spy

    def restore(self) -> None:
        if hasattr(self, "_restore"):
            cls, original = self._restore
            setattr(cls, "shutdown_default_executor", original)  # noqa: B010


@pytest.fixture
def seen() -> Iterator[Seen]:
    recorder = Seen()
    try:
        yield recorder
    finally:
        recorder.restore()


def _balanced() -> bool:
    s = stats()
    ended = s.graceful_releases + s.forced_releases + s.release_failures
    return s.acquisitions == ended + sum(s.resources_live.values())


def _run_with_runner(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if not hasattr(asyncio, "Runner"):  # 3.10: asyncio.run is the runner
        asyncio.run(main())
        return
    with asyncio.Runner() as runner:
        runner.run(main())


RUNNERS = [
    pytest.param(lambda main: asyncio.run(main()), id="asyncio.run"),
    pytest.param(_run_with_runner, id="Runner"),
    pytest.param(
        lambda main: uvloop.run(main()) if uvloop is not None else None,
        id="uvloop.run",
        marks=needs_uvloop,
    ),
]


@pytest.mark.parametrize("run", RUNNERS)
def test_released_in_the_shutdown_pass_before_the_executor_shuts_down(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None], seen: Seen
) -> None:
    first, second = seen.template("first"), seen.template("second")
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await first.acquire()
        await second.acquire()

    run(main)
    assert [r for r, _, _ in seen.released] == seen.created[::-1]  # newest first, once each
    # Before the executor shut down (the close hook comes after it), in a task.
    assert [(shut, in_task) for _, shut, in_task in seen.released] == [(False, True)] * 2
    assert loops[0].is_closed()
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.loops_tracked) == (2, 0, 0)
    assert _balanced()


@pytest.mark.parametrize("run", RUNNERS[:2])
def test_a_release_may_still_use_the_default_executor(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None], seen: Seen
) -> None:
    """Releasing in the close hook, after the shutdown, this release could not run at all."""
    closed_in: list[str] = []

    async def close_in_a_thread(resource: object) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: closed_in.append(threading.current_thread().name)
        )

    template = seen.template("offloaded", close_in_a_thread)

    async def main() -> None:
        await template.acquire()

    run(main)
    assert len(closed_in) == 1
    assert closed_in[0] != threading.current_thread().name
    s = stats()
    assert (s.graceful_releases, s.release_failures, s.forced_releases) == (1, 0, 0)


def test_a_mid_life_shutdown_from_the_running_loop_releases_nothing(seen: Seen) -> None:
    template = seen.template("kept")

    async def main() -> None:
        resource = await template.acquire()
        await asyncio.get_running_loop().shutdown_default_executor()
        assert seen.released == []
        assert await template.acquire() is resource  # still held

    asyncio.run(main())
    assert [r for r, _, _ in seen.released] == seen.created  # by the close hook, once
    assert len(seen.created) == 1


def test_acquisitions_after_the_shutdown_pass_are_released_by_the_close_hook(
    seen: Seen,
) -> None:
    template = seen.template("again")
    loop = asyncio.new_event_loop()
    seen.watch_shutdowns(loop)
    try:
        early = loop.run_until_complete(template.acquire())
        loop.run_until_complete(loop.shutdown_default_executor())
        assert [r for r, _, _ in seen.released] == [early]
        assert len(seen.shutdowns) == 1  # the real one ran too, once
        late = loop.run_until_complete(template.acquire())  # the loop is still open to it
        assert late is not early
    finally:
        loop.close()
    assert [r for r, _, _ in seen.released] == [early, late]
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.loops_tracked) == (2, 0, 0)
    assert _balanced()


def test_a_loop_used_only_inside_managers_gets_no_shutdown_wrapper(seen: Seen) -> None:
    """The manager releases there; the wrapper would only cost."""
    template = seen.template("managed")
    wrapped: list[bool] = []

    async def main() -> None:
        async with resource_manager():
            await template.acquire()
        wrapped.append("shutdown_default_executor" in vars(asyncio.get_running_loop()))

    asyncio.run(main())
    assert wrapped == [False]
    assert len(seen.released) == 1


def test_chains_with_an_earlier_instance_wrapper(seen: Seen) -> None:
    template = seen.template("chained")
    loop = asyncio.new_event_loop()
    calls: list[tuple[Any, ...]] = []
    original = loop.shutdown_default_executor

    def theirs(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    loop.shutdown_default_executor = theirs  # type: ignore[method-assign]
    try:
        loop.run_until_complete(template.acquire())
        loop.run_until_complete(loop.shutdown_default_executor())
        assert calls == [()]
        assert len(seen.released) == 1
    finally:
        loop.close()
    assert len(seen.released) == 1


def test_wrapped_once_and_only_on_a_loop_that_holds_resources(seen: Seen) -> None:
    first, second = seen.template("a"), seen.template("b")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert "shutdown_default_executor" not in vars(loop)
        await first.acquire()
        wrapper = vars(loop)["shutdown_default_executor"]
        await second.acquire()
        await first.release()
        await first.acquire()
        assert vars(loop)["shutdown_default_executor"] is wrapper

    asyncio.run(main())
    assert len(seen.released) == 3


def test_ctrl_c_in_a_release_of_the_shutdown_pass_settles_everything(seen: Seen) -> None:
    async def interrupt(resource: object) -> None:
        raise KeyboardInterrupt

    calm, interrupting = seen.template("calm"), seen.template("interrupting", interrupt)

    async def main() -> None:
        await calm.acquire()
        await interrupting.acquire()

    with record_text() as caught, pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    # The interrupted release ran once; the one not begun was forced, never released twice.
    assert [r for r, _, _ in seen.released] == [seen.created[1]]
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.loops_tracked) == (0, 2, 0)
    assert _balanced()
    unsettled = ("never awaited", "destroyed but it is pending")
    assert not [w for w in caught if any(text in w.message for text in unsettled)]


@pytest.mark.parametrize("gc_on", [False, True], ids=["gc-off", "gc-on"])
def test_the_shutdown_wrapper_holds_no_strong_reference_to_its_loop(
    seen: Seen, gc_on: bool
) -> None:
    """After the shutdown pass and close, the loop is freed: by reference counting alone
    (gc-off: no cycle through the wrapper), and of course with the collector on."""
    import gc
    import weakref

    template = seen.template("weak")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(template.acquire())
    probe = weakref.ref(loop)
    gc.collect()
    if not gc_on:
        gc.disable()
    try:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        del loop
        if gc_on:
            gc.collect()
        assert probe() is None
    finally:
        gc.enable()
    assert resourceloop.stats().loops_tracked == 0
    assert len(seen.released) == 1


def test_no_wrapper_where_it_would_cost_the_loop_its_inline_attributes(
    monkeypatch: pytest.MonkeyPatch, seen: Seen
) -> None:
    """The close hook releases instead, as gracefully, one pass later."""
    monkeypatch.setattr(_closehook, "_SHUTDOWN_FITS", False)
    template = seen.template("crowded")
    wrapped: list[bool] = []

    async def main() -> None:
        await template.acquire()
        wrapped.append("shutdown_default_executor" in vars(asyncio.get_running_loop()))

    asyncio.run(main())
    assert wrapped == [False]
    assert [in_task for _, _, in_task in seen.released] == [True]
    s = stats()
    assert (s.graceful_releases, s.forced_releases) == (1, 0)


def test_the_real_rule_on_this_python(monkeypatch: pytest.MonkeyPatch, seen: Seen) -> None:
    """As shipped: wrapped where asyncio's loop leaves room for one more name (not 3.14+)."""
    monkeypatch.undo()
    template = seen.template("as-shipped")
    found: list[tuple[bool, int]] = []

    async def main() -> None:
        await template.acquire()
        names = vars(asyncio.get_running_loop())
        found.append(("shutdown_default_executor" in names, len(names)))

    asyncio.run(main())
    ((wrapped, names),) = found
    assert wrapped == (sys.version_info < (3, 14))
    # The table behind the rule is right for this Python: with the wrapper the loop stays
    # below the limit, and where it is left out it would have reached it.
    assert (names - wrapped + 1 < _closehook._INLINE_NAMES) == wrapped
    assert len(seen.released) == 1


@pytest.mark.parametrize("run", RUNNERS)
def test_a_release_that_never_lets_go_of_its_task_cannot_hold_the_loop_s_end(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
) -> None:
    """A release that swallows its cancellation, and even its closing, is forced at
    ``release_timeout + grace`` and abandoned: the loop's end goes on, books balanced."""
    from resourceloop.warnings import ReleaseTimeoutWarning

    resourceloop.configure(release_timeout=0.2)
    forced: list[object] = []
    calm_released: list[object] = []

    async def never_lets_go(resource: object) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except (asyncio.CancelledError, GeneratorExit):  # retries, even when closed
                continue

    stuck = ResourceTemplate(object, never_lets_go, name="stuck", force_release_func=forced.append)
    calm = ResourceTemplate(object, calm_released.append, name="calm")

    async def main() -> None:
        await calm.acquire()  # released after the stuck one (newest first)
        await stuck.acquire()

    with pytest.warns(ReleaseTimeoutWarning, match="'stuck'"):
        run(main)
    assert len(forced) == 1
    assert len(calm_released) == 1  # the loop's end went on past the stuck release
    s = stats()
    assert (s.forced_releases, s.graceful_releases, s.release_timeouts) == (1, 1, 1)
    assert (s.loops_tracked, s.resources_live) == (0, {})
    assert _balanced()


@pytest.mark.parametrize("run", RUNNERS)
def test_releases_run_in_the_pass_s_own_task_and_see_its_cancellations(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None], seen: Seen
) -> None:
    """The pass's task runs each release itself, blocked on a real future, and the task's
    cancellations reach that future: the deadline's, which the release may answer by
    cleaning up in time (graceful), and a release's own cancel scope (``asyncio.timeout``).
    Neither leaves a cancellation pending on the task: the executor still shuts down."""
    resourceloop.configure(release_timeout=0.3)
    tasks: list[tuple[object, int]] = []
    cleaned: list[str] = []

    def note() -> None:
        loop = asyncio.get_running_loop()
        tasks.append((asyncio.current_task(), len(asyncio.all_tasks(loop))))

    async def answers_the_deadline(resource: object) -> None:
        note()
        try:
            await asyncio.get_running_loop().create_future()  # never completed
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # cleanup within the grace: a graceful release
            cleaned.append("deadline")

    async def own_timeout(resource: object) -> None:
        note()
        if not hasattr(asyncio, "timeout"):  # 3.10
            cleaned.append("timeout")
            return
        try:
            async with asyncio.timeout(0.01):
                await asyncio.get_running_loop().create_future()
        except TimeoutError:
            cleaned.append("timeout")

    templates = [
        seen.template("deadline", answers_the_deadline),
        seen.template("timeout", own_timeout),
    ]

    async def main() -> None:
        for template in templates:
            await template.acquire()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ReleaseTimeoutWarning: both ended in time
        run(main)
    assert cleaned == ["timeout", "deadline"]  # newest first
    # One task, the pass's, alone on the loop (asyncio's own), for both releases.
    assert len({task for task, _ in tasks}) == 1
    assert [count for _, count in tasks] == [1, 1]
    assert [shut for _, shut, _ in seen.released] == [False, False]
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.release_timeouts) == (2, 0, 0)
    assert (s.loops_tracked, s.resources_live) == (0, {})
    assert _balanced()


@pytest.mark.parametrize("run", RUNNERS)
def test_a_release_given_up_on_is_never_resumed_even_if_it_cannot_be_stopped(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A release that never blocks (it spins on ``sleep(0)``) and resists everything, even its
    closing: at its bound it is forced and left suspended where it is, referenced; the pass's
    task goes on without ever stepping it again."""
    from resourceloop._registry import registry
    from resourceloop.warnings import ReleaseTimeoutWarning

    resourceloop.configure(release_timeout=0.05)
    forced: list[object] = []
    resumed_after_forced: list[int] = []
    let_go: list[bool] = []

    async def resists(resource: object) -> None:
        while True:
            try:
                await asyncio.sleep(0)  # a bare yield: the task is not blocked on a future
            except BaseException:  # the deadline's cancellation, even its closing
                if let_go:
                    raise
            if forced:
                resumed_after_forced.append(1)
                if len(resumed_after_forced) == 3:
                    return  # (what a broken bound would do: keep running it; not for ever)

    stuck = ResourceTemplate(object, resists, name="resists", force_release_func=forced.append)
    calm_released: list[object] = []
    calm = ResourceTemplate(object, calm_released.append, name="calm")

    async def main() -> None:
        await calm.acquire()  # released after the stuck one (newest first)
        await stuck.acquire()

    unstoppable = len(registry.unstoppable)
    with pytest.warns(ReleaseTimeoutWarning, match="'resists'"):
        run(main)
    try:
        assert len(forced) == 1
        assert resumed_after_forced == []
        assert len(calm_released) == 1
        assert "'resists' ignored GeneratorExit" in caplog.text
        s = stats()
        assert (s.forced_releases, s.graceful_releases, s.release_timeouts) == (1, 1, 1)
        assert (s.loops_tracked, s.resources_live) == (0, {})
        assert _balanced()
    finally:
        let_go.append(True)
        for coro in registry.unstoppable[unstoppable:]:
            coro.close()  # type: ignore[attr-defined]
        del registry.unstoppable[unstoppable:]


@pytest.mark.parametrize("run", RUNNERS)
def test_a_release_that_never_blocks_still_sees_the_deadline_and_may_answer_it(
    run: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
) -> None:
    """A release that only ever yields bare (``sleep(0)``, never blocked on a future) gets the
    deadline's cancellation thrown in where it is; cleaning up then, within its grace, it is
    a graceful release, and the pass goes on (no warning, nothing forced)."""
    resourceloop.configure(release_timeout=0.05)
    cleaned: list[str] = []

    async def polls(resource: object) -> None:
        try:
            while True:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            cleaned.append("cancelled")  # and returns: the cancellation is answered

    template = ResourceTemplate(object, polls, name="polls", force_release_func=id)

    async def main() -> None:
        await template.acquire()

    run(main)
    assert cleaned == ["cancelled"]
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.release_timeouts) == (1, 0, 0)
    assert (s.loops_tracked, s.resources_live) == (0, {})
    assert _balanced()


def test_a_creation_in_flight_at_the_shutdown_pass_ends_within_it(seen: Seen) -> None:
    """A creation still running when the shutdown pass starts (a loop ended by hand, its tasks
    not cancelled first) is cancelled and waited for in the pass; finishing all the same, its
    resource is released there too, on the loop, before the executor shuts down."""
    from resourceloop import LoopClosedError

    held = seen.template("held")
    gate: list[asyncio.Future[None]] = []

    async def create() -> str:
        gate.append(asyncio.get_running_loop().create_future())
        try:
            await gate[-1]
        except asyncio.CancelledError:
            pass  # finishes all the same: the resource must still be released
        return "late"

    late_released: list[bool] = []

    async def release_late(resource: str) -> None:
        loop = asyncio.get_running_loop()
        late_released.append(bool(getattr(loop, "_executor_shutdown_called", False)))

    late = ResourceTemplate(create, release_late, name="late")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(held.acquire())
        acquiring = loop.create_task(late.acquire())
        loop.run_until_complete(asyncio.sleep(0))
        assert gate  # the creation is in flight
        loop.run_until_complete(loop.shutdown_default_executor())
        assert gate[0].cancelled()
        assert acquiring.done()
        assert isinstance(acquiring.exception(), LoopClosedError)
        assert late_released == [False]  # in the pass, before the executor shut down
        assert [shut for _, shut, _ in seen.released] == [False]
    finally:
        loop.close()
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.loops_tracked) == (2, 0, 0)
    assert _balanced()
