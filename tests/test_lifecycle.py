"""Tests for `resourceloop._lifecycle`: a loop's end, one transition, at the edges that broke.

Real signals (``os.kill``, ``setitimer``), real forks under load, release functions that refuse
to stop, and every awaitable the ``await`` protocol allows. The garbage collector stays on.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_manager
from resourceloop.warnings import ReleaseTimeoutWarning, ResourceLoopWarning
from tests._signals import RandomInterrupts

posix_only = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX signals")


def _books_balance() -> bool:
    snap = resourceloop.stats()
    live = sum(snap.resources_live.values())
    return snap.acquisitions == (
        snap.graceful_releases + snap.forced_releases + snap.release_failures + live
    )


@pytest.fixture
def quiet() -> Iterator[None]:
    """resourceloop's own warnings are expected here (forced releases); anything else is not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        yield


# -- case 2: Ctrl-C during asyncio.run's release pass ------------------------------------------


@pytest.fixture
def ctrl_c_as_a_terminal_delivers_it() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as at a terminal.

    A process started in the background by a non-interactive shell (CI's parallel groups, the
    sid root's runner) inherits SIGINT ignored, and Python then leaves it ignored.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@posix_only
@pytest.mark.usefixtures("quiet", "ctrl_c_as_a_terminal_delivers_it")
@pytest.mark.parametrize("release_timeout", [0.5, 60.0])
def test_ctrl_c_in_asyncio_run_s_release_pass_forces_the_rest_at_once(
    release_timeout: float,
) -> None:
    """A real SIGINT while asyncio.run releases: out at once, each resource once, one at a time.

    The interrupt arrives while the loop waits in its selector (not inside the release), so it
    escapes the pass and leaves the pass's task pending; the close hook then stops that task
    and forces what is left, instead of starting a second release of the same loop. (From
    3.14, where the shutdown wrapper is left out, the pass is the close hook's own.)
    """
    resourceloop.configure(release_timeout=release_timeout)
    running: list[str] = []
    events: list[tuple[str, str]] = []
    releasing = threading.Event()

    async def slow_release(name: str) -> None:
        running.append(name)
        assert len(running) == 1, "two releases of one loop at once"
        events.append(("start", name))
        releasing.set()
        try:
            await asyncio.sleep(3600)
        finally:
            running.remove(name)
            events.append(("end", name))

    def force(name: str) -> None:
        events.append(("force", name))

    templates = [
        ResourceTemplate(lambda n=n: n, slow_release, name=n, force_release_func=force)
        for n in ("first", "second")
    ]

    async def main() -> None:
        for template in templates:
            await template.acquire()

    def interrupt() -> None:
        assert releasing.wait(60)
        # Ctrl-C at a terminal: SIGINT, to the main thread (a process-directed signal may be
        # taken by any thread that does not block it, and then waits for the main thread).
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    kicker = threading.Thread(target=interrupt)
    kicker.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
    finally:
        kicker.join()
    # The newest is released first; it is cut short (stopped, so its own cleanup runs before
    # it is forced), and neither is released a second time.
    assert events == [
        ("start", "second"),
        ("end", "second"),
        ("force", "second"),
        ("force", "first"),
    ]
    snap = resourceloop.stats()
    assert (snap.acquisitions, snap.graceful_releases, snap.forced_releases) == (2, 0, 2)
    assert snap.resources_live == {}
    assert snap.loops_tracked == 0


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("owner_set", [True, False], ids=["after-taking", "before-taking"])
def test_ctrl_c_as_the_loop_s_end_begins_still_settles_everything(
    monkeypatch: pytest.MonkeyPatch, owner_set: bool
) -> None:
    """A Ctrl-C landing just as the close hook's end of the loop begins, as ``begin_end``
    returns (the resources taken, the end ours) or just before it: the loop still closes,
    what was taken is forced, the loop is untracked, and the interrupt is what propagates."""
    from resourceloop._registry import registry

    begin_end = registry.begin_end

    def interrupted(state: Any, *, ender: Any) -> Any:
        if owner_set:
            begin_end(state, ender=ender)
        raise KeyboardInterrupt

    forced: list[object] = []
    template = ResourceTemplate(object, name="held", force_release_func=forced.append)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(template.acquire())
    monkeypatch.setattr(registry, "begin_end", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loop.close()
    monkeypatch.undo()
    assert loop.is_closed()
    if not owner_set:  # nothing was taken: the resource is still the loop's, for the reaper
        resourceloop.reap()
    assert len(forced) == 1
    snap = resourceloop.stats()
    assert (snap.forced_releases, snap.graceful_releases, snap.loops_tracked) == (1, 0, 0)
    assert _books_balance()


def test_a_thread_that_waited_for_the_guard_leaves_it_free() -> None:
    """``wait_for_guard``: a thread that waits while another runs the loop to end it (the owner
    calling ``close()`` while the reaper runs it) takes the guard only to know the run is over,
    and leaves it free, for the next run (a later reaper pass, the exit handler)."""
    from resourceloop._lifecycle import wait_for_guard
    from resourceloop._registry import registry

    resourceloop.configure(release_timeout=0.1)  # bounds the wait, should the guard stay taken
    template = ResourceTemplate(object, name="guarded")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(template.acquire())
    state = registry.get(loop)
    assert state is not None
    real = state.guard
    waiting = threading.Event()

    class Guard:
        """The real lock, which says when a waiter starts to wait for it."""

        def locked(self) -> bool:
            return real.locked()

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            waiting.set()
            return real.acquire(blocking, timeout)

        def release(self) -> None:
            real.release()

    state.guard = Guard()  # type: ignore[assignment]
    try:
        real.acquire()  # another thread's run of the loop, under way
        waiter = threading.Thread(target=wait_for_guard, args=(state,))
        waiter.start()
        assert waiting.wait(30)
        real.release()  # that run is over
        waiter.join(30)
        assert not waiter.is_alive()
        assert not real.locked()
    finally:
        state.guard = real
        loop.close()
    assert resourceloop.stats().loops_tracked == 0


# -- case 3: fork while other threads hold the registry's lock ---------------------------------


#: The program of the test below. It runs in an interpreter of its own: forking the test
#: process, with every library the suite imports in its heap, costs about 3 times as much per
#: fork (20 ms against 7 ms), and the claim is about the threads and locks, not the heap.
_FORKS_UNDER_LOAD = """
import asyncio, os, signal, sys, threading, time, warnings
import resourceloop
from resourceloop import ResourceTemplate

warnings.simplefilter("error")
warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
template = ResourceTemplate(object, name="forked")
stop = threading.Event()

def acquirer():
    async def main():
        await template.acquire()
    while not stop.is_set():
        asyncio.run(main())

def reaper():
    while not stop.is_set():
        resourceloop.reap()

def reader():
    while not stop.is_set():
        resourceloop.stats()
        resourceloop.live_resources()

threads = [
    threading.Thread(target=work, daemon=True)
    for work in (acquirer, acquirer, acquirer, reaper, reaper, reader, reader, reader)
]
for thread in threads:
    thread.start()
hung, failed = [], []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:  # the child: everything that takes a lock, then out
            code = 1
            try:
                resourceloop.stats()
                resourceloop.reap()

                async def child():
                    await template.acquire()

                asyncio.run(child())
                code = 0 if resourceloop.stats().graceful_releases == 1 else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.waitstatus_to_exitcode(status) != 0:
                    failed.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:  # only when broken: a hung child
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                hung.append(pid)
                break
            time.sleep(0.001)
finally:
    stop.set()
    for thread in threads:
        thread.join()
resourceloop.reap()
snap = resourceloop.stats()
live = sum(snap.resources_live.values())
released = snap.graceful_releases + snap.forced_releases + snap.release_failures
print(f"hung={hung} failed={failed} balanced={snap.acquisitions == released + live}")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_forks_while_eight_threads_acquire_reap_and_read_stats_never_hang() -> None:
    """500 forks while 8 threads use the registry: every child uses it too, and exits."""
    result = subprocess.run(
        [sys.executable, "-c", _FORKS_UNDER_LOAD],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hung=[] failed=[] balanced=True", result.stderr


# -- case 4: a real signal at a random instant ---------------------------------------------------


@posix_only
@pytest.mark.usefixtures("quiet")
@pytest.mark.timeout(600, method="thread")
# A KeyboardInterrupt raised inside a weak reference callback cannot leave it: CPython reports
# it as unraisable ("Exception ignored in"), which pytest turns into this warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_books_balance_whatever_instant_a_signal_lands() -> None:
    """10,000 runs, each interrupted by a real signal at a random instant: the books balance.

    The handler raises KeyboardInterrupt, as Ctrl-C does, wherever resourceloop's code or the
    program's own runs: in an acquire function, between a creation and its bookkeeping, in a
    release, in the close hook, the shutdown pass, a weak reference callback. Not inside
    asyncio's own frames: asyncio itself is not safe against an exception raised at any
    instant (a wakeup popped from its ready queue and lost hangs ``asyncio.run`` for ever; a
    ``_stopping`` flag left set stops its next run), whatever library runs on it.
    (pytest-timeout watches this test from a thread: SIGALRM is the test's.)
    """
    ours = (os.path.dirname(resourceloop.__file__), __file__)

    def in_ours(frame: types.FrameType) -> bool:
        return frame.f_code.co_filename.startswith(ours)

    async def make_async() -> object:
        await asyncio.sleep(0)
        return object()

    async def release(resource: object) -> None:
        await asyncio.sleep(0)

    sync_made = ResourceTemplate(object, release, name="sync", force_release_func=id)
    async_made = ResourceTemplate(make_async, release, name="async", force_release_func=id)

    async def main() -> None:
        await sync_made.acquire()
        await async_made.acquire()
        await asyncio.sleep(0)

    unbalanced: list[int] = []
    with RandomInterrupts(seed=20261207, longest=1.5e-3, where=in_ours) as interrupts:
        for run in range(10_000):
            interrupts.run(lambda: asyncio.run(main()))
            resourceloop.reap()
            if resourceloop.stats().resources_live:
                # An interrupt at the very start of loop.close() leaves the loop unclosed and
                # dropped, in a reference cycle: its resources are forced once the collector
                # finds it.
                gc.collect()
                resourceloop.reap()
            if not _books_balance() or resourceloop.stats().resources_live:
                unbalanced.append(run)
    assert unbalanced == []
    assert (
        interrupts.interrupted > 100
    )  # the signal did land in resourceloop's code and the program's


@posix_only
def test_a_signal_wakes_the_loop_while_the_close_hook_releases_on_it() -> None:
    """While the main thread runs a loop to release on it, a signal wakes its selector.

    In the close hook's own run and in asyncio.run's shutdown pass.

    Without a wakeup fd, a Ctrl-C landing between the interpreter's last check and the
    selector's wait is handled only when the wait ends (seen on 3.14: a whole release_timeout
    late). The close hook sets the loop's self-pipe as the wakeup fd for its run, and unsets
    it after; a program's own wakeup fd is left alone.
    """
    seen: list[int] = []

    async def release(resource: object) -> None:
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        seen.append(fd)

    template = ResourceTemplate(object, release, name="wakes")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(template.acquire())
    self_pipe = loop._csock.fileno()  # type: ignore[attr-defined]
    loop.close()
    assert seen == [self_pipe]
    assert signal.set_wakeup_fd(-1) == -1  # unset after the run

    async def main() -> int:  # asyncio.run: its shutdown pass releases (before 3.14)
        await template.acquire()
        return int(asyncio.get_running_loop()._csock.fileno())  # type: ignore[attr-defined]

    run_pipe = asyncio.run(main())
    assert len(seen) == 2
    assert seen[1] == run_pipe
    assert signal.set_wakeup_fd(-1) == -1

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    try:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(template.acquire())
        loop.close()
        assert seen[-1] == writer.fileno()  # the program's own, kept
    finally:
        assert signal.set_wakeup_fd(-1) == writer.fileno()
        reader.close()
        writer.close()


# -- case 5: release_timeout is a hard limit at a loop's end ------------------------------------


async def _ignores_cancellation() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
            return
        except asyncio.CancelledError:
            continue


async def _gather_of_stubborn_children(resource: object) -> None:
    await asyncio.gather(_ignores_cancellation(), _ignores_cancellation())


async def _bare_except_retry(resource: object) -> None:
    while True:
        try:
            await asyncio.sleep(3600)
            return
        except:  # noqa: E722 - what the release under test does
            continue


def _closing_ways() -> dict[str, Callable[[Callable[[], Any]], None]]:
    def run(main: Callable[[], Any]) -> None:
        asyncio.run(main())

    def close(main: Callable[[], Any]) -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()

    def runner(main: Callable[[], Any]) -> None:
        with asyncio.Runner() as r:  # type: ignore[attr-defined, unused-ignore]
            r.run(main())

    ways: dict[str, Callable[[Callable[[], Any]], None]] = {"asyncio.run": run, "loop.close": close}
    if sys.version_info >= (3, 11):
        ways["Runner"] = runner
    return ways


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("how", sorted(_closing_ways()))
@pytest.mark.parametrize(
    "release", [_gather_of_stubborn_children, _bare_except_retry], ids=["gather", "bare-except"]
)
def test_a_release_that_never_lets_go_cannot_hold_a_loop_s_end(
    how: str, release: Callable[[object], Any]
) -> None:
    """A release that swallows every cancellation, even its closing: the loop ends regardless.

    Without the bound it would hold the close for an hour (the children's sleep); the suite's
    per-test timeout would fail it.
    """
    resourceloop.configure(release_timeout=0.2)
    forced: list[object] = []
    template = ResourceTemplate(object, release, name="stubborn", force_release_func=forced.append)

    async def main() -> None:
        await template.acquire()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReleaseTimeoutWarning)
        _closing_ways()[how](main)
    assert len(forced) == 1
    assert [w.category for w in caught if issubclass(w.category, ResourceLoopWarning)] == [
        ReleaseTimeoutWarning
    ]
    snap = resourceloop.stats()
    assert (snap.forced_releases, snap.release_timeouts, snap.graceful_releases) == (1, 1, 0)
    assert snap.loops_tracked == 0


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("how", sorted(_closing_ways()))
def test_one_stuck_release_does_not_cost_the_others_their_graceful_release(how: str) -> None:
    """At a loop's end, a stuck release is given up on; the releases after it still run (in
    the same task at asyncio.run's last pass, in a new one where the close hook runs the loop)."""
    resourceloop.configure(release_timeout=0.2)
    released: list[str] = []

    async def fine(name: str) -> None:
        await asyncio.sleep(0)
        released.append(name)

    first = ResourceTemplate(lambda: "first", fine, name="first", force_release_func=id)
    stuck = ResourceTemplate(
        lambda: "stuck", _gather_of_stubborn_children, name="stuck", force_release_func=id
    )
    last = ResourceTemplate(lambda: "last", fine, name="last", force_release_func=id)

    async def main() -> None:
        for template in (first, stuck, last):
            await template.acquire()

    _closing_ways()[how](main)  # released newest first: last, stuck, first
    assert released == ["last", "first"]
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.release_timeouts) == (2, 1, 1)


@pytest.mark.usefixtures("quiet")
def test_past_its_bound_the_close_hook_starts_nothing_more_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The close hook runs the loop for ``release_bound`` at most: a stuck release given up on
    just as that bound passes leaves the others to be forced, with no task started for them."""
    from resourceloop import _loop_run

    resourceloop.configure(release_timeout=0.2)
    late = [0.0]

    class Clock:
        """Time as ``_loop_run`` sees it: the stuck release's forcing moves it past the bound."""

        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + late[0]

    monkeypatch.setattr(_loop_run, "time", Clock)
    forced: list[str] = []

    def force(name: str) -> None:
        forced.append(name)
        if name == "stuck":
            late[0] = 3600.0

    first = ResourceTemplate(lambda: "first", None, name="first", force_release_func=force)
    stuck = ResourceTemplate(
        lambda: "stuck", _gather_of_stubborn_children, name="stuck", force_release_func=force
    )
    started_late: list[object] = []

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if late[0]:
            started_late.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> None:
        for template in (first, stuck):
            await template.acquire()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    loop.set_task_factory(counting_factory)
    loop.close()
    assert forced == ["stuck", "first"]
    assert started_late == []
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.release_timeouts) == (0, 2, 1)
    assert snap.loops_tracked == 0


@pytest.mark.usefixtures("quiet")
def test_a_release_that_cancels_its_own_task_ends_the_close_hook_s_run_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The close hook runs the releases in a task of its own; a release that cancels that task
    ends it cancelled, and the run ends there and then, with nothing for asyncio to report:
    the release cut short and the one not begun are forced."""
    resourceloop.configure(release_timeout=0.2)  # the run's bound: 0.75 s (the watchdog's 10 s)
    forced: list[str] = []

    async def cancels_its_task(name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    first = ResourceTemplate(lambda: "first", None, name="first", force_release_func=forced.append)
    cancels = ResourceTemplate(
        lambda: "cancels", cancels_its_task, name="cancels", force_release_func=forced.append
    )

    async def main() -> None:
        for template in (first, cancels):
            await template.acquire()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    # Only if the run never ended (the end of the task went unnoticed) does this stop it.
    watchdog = threading.Timer(10.0, loop.call_soon_threadsafe, args=(loop.stop,))
    watchdog.start()
    try:
        loop.close()
    finally:
        watchdog.cancel()
        watchdog.join()
    assert forced == ["cancels", "first"]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.loops_tracked) == (0, 2, 0)


# -- case 6: the await protocol, exactly ----------------------------------------------------------


class _PlainIteratorAwaitable:
    """``__await__`` returns a plain iterator (no send, throw or close)."""

    def __init__(self, steps: int, done: list[str]) -> None:
        self._steps = steps
        self._done = done

    def __await__(self) -> Iterator[None]:
        self._done.append("awaited")
        return iter([None] * self._steps)


@types.coroutine
def _generator_coroutine(done: list[str]) -> Generator[None, None, None]:
    yield  # one bare suspension, as asyncio.sleep(0) makes
    done.append("generator")


class _FutureLike:
    """An awaitable whose ``__await__`` is a generator yielding a real future."""

    def __init__(self, done: list[str]) -> None:
        self._done = done

    def __await__(self) -> Generator[Any, None, None]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        yield from future
        self._done.append("future")


@pytest.mark.parametrize("manager", [False, True], ids=["close-hook", "manager"])
def test_every_kind_of_awaitable_a_release_may_return_is_awaited(manager: bool) -> None:
    """A plain-iterator ``__await__``, a ``@types.coroutine`` generator, a future-yielding one."""
    done: list[str] = []
    returns: list[Callable[[], Any]] = [
        lambda: _PlainIteratorAwaitable(0, done),
        lambda: _PlainIteratorAwaitable(2, done),
        lambda: _generator_coroutine(done),
        lambda: _FutureLike(done),
    ]

    def releasing_with(make: Callable[[], Any]) -> Callable[[object], Any]:
        return lambda _: make()

    templates = [
        ResourceTemplate(object, releasing_with(make), name=f"kind{i}")
        for i, make in enumerate(returns)
    ]

    async def main() -> None:
        if manager:
            async with resource_manager():
                for template in templates:
                    await template.acquire()
        else:
            for template in templates:
                await template.acquire()

    asyncio.run(main())
    assert sorted(done) == ["awaited", "awaited", "future", "generator"]
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.release_failures, snap.forced_releases) == (4, 0, 0)


def test_an_awaitable_that_breaks_the_protocol_is_a_failure_not_a_leak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``__await__`` returning a coroutine (not an iterator) fails as ``await`` would: counted."""

    made: list[Any] = []

    class Broken:
        def __await__(self) -> Any:
            made.append(asyncio.sleep(0))
            return made[-1]

    template = ResourceTemplate(object, lambda _: Broken(), name="broken")

    async def main() -> None:
        await template.acquire()

    asyncio.run(main())
    made.pop().close()  # the coroutine __await__ wrongly returned: never awaited, by design
    snap = resourceloop.stats()
    assert (snap.release_failures, snap.resources_live) == (1, {})
    # CPython's own words: "returned a coroutine" up to 3.14, "must return an iterator, not
    # coroutine" from 3.15.
    assert re.search(
        r"__await__\(\) (returned a|must return an iterator, not) coroutine", caplog.text
    )


# -- case 7: a callable result ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["release_func", "force_release_func"])
def test_a_release_function_that_returns_a_callable_is_a_named_failure(
    which: str, caplog: pytest.LogCaptureFixture, quiet: None
) -> None:
    """``lambda s: s.close`` releases nothing: a failure, naming the template and the fix."""

    class Session:
        closed = False

        def close(self) -> None:
            self.closed = True

    session = Session()
    if which == "release_func":
        template = ResourceTemplate(lambda: session, lambda s: s.close, name="typo")
    else:
        template = ResourceTemplate(
            lambda: session, None, name="typo", force_release_func=lambda s: s.close
        )

    async def main() -> None:
        await template.acquire()

    if which == "release_func":
        asyncio.run(main())
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        type(loop).close(loop)  # closed without the hook: the reaper forces
        resourceloop.reap()
    assert not session.closed
    snap = resourceloop.stats()
    assert (snap.release_failures, snap.graceful_releases, snap.resources_live) == (1, 0, {})
    assert f"the {which} of template 'typo' returned <bound method" in caplog.text
    assert "`lambda r: r.close()`" in caplog.text
