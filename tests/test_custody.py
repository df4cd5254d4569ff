"""Tests for custody (``resourceloop._release``): exactly once at every edge.

The first part injects KeyboardInterrupt, SystemExit and CancelledError at every call into
user code and at every await of a release, on every way a loop ends, and checks that each
resource is released exactly once and that the books balance. The rest covers the edges one
by one: ``stop(); close()``, creations in flight, fork, worker threads that never close their
loops, the reaper racing the owner, acquisition cycles, blocking releases, dropped templates.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import resourceloop
from resourceloop import (
    AcquisitionCycleError,
    ResourceTemplate,
    reap,
    resource_manager,
    stats,
)
from resourceloop._compat import ExceptionGroup
from resourceloop._force import force_batch
from resourceloop._registry import registry
from resourceloop._release import release_batch
from resourceloop._state import HELD, SETTLED
from resourceloop.warnings import (
    BlockingReleaseWarning,
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    UnclosedLoopWarning,
    UngracefulLoopWarning,
)
from tests._fakes import Recorder, Res
from tests.conftest import exact_refcounts

from ._loops import LOOP_FACTORIES, LoopFactory, abandon, uvloop

INJECTED = (KeyboardInterrupt, SystemExit, asyncio.CancelledError)


class Fault(Exception):
    pass


class Plan:
    """Raise ``exc`` at the ``at``-th injection point reached (0: never)."""

    def __init__(self, exc: type[BaseException], at: int) -> None:
        self.exc = exc
        self.at = at
        self.points = 0
        self.fired = False

    def point(self) -> None:
        self.points += 1
        if self.points == self.at:
            self.fired = True
            raise self.exc


class Faulty:
    """Two templates whose acquire and release functions pass through injection points."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.made: list[Res] = []
        self.templates = [
            ResourceTemplate(
                self._acquire("a"), self._release, name="a", force_release_func=self._force
            ),
            ResourceTemplate(
                self._acquire("b"), self._release, name="b", force_release_func=self._force
            ),
        ]

    def _acquire(self, name: str) -> Callable[[], Any]:
        async def acquire() -> Res:
            self.plan.point()
            await asyncio.sleep(0)
            self.plan.point()
            res = Res(name=name)
            self.made.append(res)
            return res

        return acquire

    async def _release(self, res: Res) -> None:
        self.plan.point()
        await asyncio.sleep(0)
        self.plan.point()
        await asyncio.sleep(0)
        self.plan.point()
        res.ends.append("released")

    def _force(self, res: Res) -> None:
        res.ends.append("forced")

    async def use(self) -> None:
        for template in self.templates:
            await template.acquire()


def _books_balance() -> None:
    s = stats()
    live = sum(s.resources_live.values())
    assert s.acquisitions == s.graceful_releases + s.forced_releases + s.release_failures + live


class RefusingLoop(asyncio.SelectorEventLoop):
    """A loop whose ``close`` cannot be wrapped: the async-generator hook stands in."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "close":
            raise AttributeError("close is read-only on this loop")
        super().__setattr__(name, value)


def _run_like_runner(main: Callable[[], Any], factory: LoopFactory) -> None:
    """What asyncio.Runner does (by hand on 3.10, which has no Runner)."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    else:  # pragma: no cover - 3.10
        loop = factory()
        try:
            loop.run_until_complete(main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()


def _run_path(path: str, faulty: Faulty) -> None:
    """End a loop that acquired both templates in the way ``path`` names."""
    if path == "runner":
        _run_like_runner(faulty.use, asyncio.new_event_loop)
    elif path == "asyncgen-fallback":
        _run_like_runner(faulty.use, RefusingLoop)
    elif path == "uvloop":
        if uvloop is None:  # pragma: no cover - no uvloop on this platform
            pytest.skip("uvloop is not installed")
        _run_like_runner(faulty.use, uvloop.new_event_loop)
    elif path == "manager":

        async def managed() -> None:
            async with resource_manager():
                await faulty.use()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(managed())
        finally:
            loop.close()
    elif path == "asyncio.run":
        asyncio.run(faulty.use())
    elif path in ("close", "stop-close"):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(faulty.use())
        finally:
            if path == "stop-close":
                loop.stop()
            loop.close()
    elif path == "reaper-closed":
        resourceloop.configure(close_hook=False)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(faulty.use())
        finally:
            loop.close()
            reap()
    elif path == "reaper-abandoned":
        out: list[BaseException] = []

        def owner() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(faulty.use())
            except BaseException as exc:
                out.append(exc)
            loops.append(loop)

        loops: list[asyncio.AbstractEventLoop] = []
        thread = threading.Thread(target=owner)
        thread.start()
        thread.join()
        try:
            if out:
                raise out[0]
        finally:
            reap()
            for loop in loops:
                loop.close()
    else:  # pragma: no cover
        raise AssertionError(path)


PATHS = [
    "manager",
    "asyncio.run",
    "runner",
    "close",
    "stop-close",
    "asyncgen-fallback",
    "uvloop",
    "reaper-closed",
    "reaper-abandoned",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("exc", INJECTED, ids=lambda e: e.__name__)
def test_fault_injection_every_point_every_path(path: str, exc: type[BaseException]) -> None:
    """Whatever is raised at whichever point, each resource ends exactly once, books balanced."""
    at = 1
    while True:
        gc.collect()  # the previous run's templates: a manager would acquire them too
        resourceloop._runtime._reset_for_tests()
        plan = Plan(exc, at)
        faulty = Faulty(plan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _run_path(path, faulty)
            except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
                assert plan.fired
            except Exception:  # a release that raised CancelledError itself: a failure
                assert plan.fired
                assert stats().release_failures == 1
            _books_balance()
            reap()  # whatever is left on an idle loop
            gc.collect()
            reap()
        _books_balance()
        for res in faulty.made:
            assert len(res.ends) <= 1, (path, at, res.name, res.ends)
        if not plan.fired:
            end = "forced" if path == "reaper-closed" else "released"
            assert [res.ends for res in faulty.made] == [[end], [end]], path
            assert at > 4  # the plan went past every point
            break
        del faulty, plan
        at += 1
        assert at < 40, "more injection points than expected"


EXIT_SCRIPT = """
import asyncio, os, sys, threading, warnings
warnings.simplefilter("ignore")
from resourceloop import ResourceTemplate, stats
exc = {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit,
       "CancelledError": asyncio.CancelledError}[sys.argv[1]]
at = int(sys.argv[2])
points = 0
ends = []

def point():
    global points
    points += 1
    if points == at:
        raise exc

async def release(res):
    point()
    await asyncio.sleep(0)
    point()
    ends.append(res)

def force(res):
    ends.append(res)

def report():
    s = stats()
    live = sum(s.resources_live.values())
    ended = s.graceful_releases + s.forced_releases + s.release_failures
    once = len(ends) == len({id(e) for e in ends})
    line = f"points={points} ends={len(ends)} live={live} "
    line += f"balanced={s.acquisitions == ended + live} once={once}"
    os.write(1, (line + "\\n").encode())

import atexit
atexit.register(report)  # before resourceloop registers its handler: so it runs after it

templates = [ResourceTemplate(object, release, name=n, force_release_func=force) for n in "ab"]
idle = asyncio.new_event_loop()  # left idle: the exit handler releases on it
for t in templates:
    idle.run_until_complete(t.acquire())
"""


@pytest.mark.parametrize("exc", INJECTED, ids=lambda e: e.__name__)
def test_fault_injection_at_interpreter_exit(exc: type[BaseException]) -> None:
    """The exit handler releases idle loops; a fault at any point still balances the books."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)}
    at = 1
    while True:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(EXIT_SCRIPT), exc.__name__, str(at)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        line = result.stdout.strip().splitlines()[-1]
        fields = dict(f.split("=") for f in line.split())
        assert fields["balanced"] == "True", (at, line, result.stderr)
        assert fields["once"] == "True", (at, line)
        assert fields["live"] == "0", (at, line)
        if int(fields["points"]) < at:  # the plan went past every point: all graceful
            assert fields["ends"] == "2", line
            break
        at += 1
        assert at < 20


# -- the edges one by one ----------------------------------------------------------------------


@pytest.mark.parametrize("factory", LOOP_FACTORIES)
def test_stop_then_close_releases_everything_on_the_loop(factory: LoopFactory) -> None:
    """``loop.stop(); loop.close()`` on an idle loop: every resource released, gracefully."""
    rec = Recorder()
    templates = [rec.template(name, yields=True, force=False) for name in ("one", "two")]
    loop = factory()

    async def use() -> None:
        for t in templates:
            await t.acquire()

    loop.run_until_complete(use())
    loop.stop()
    loop.close()
    assert sorted(r.name for r in rec.released) == ["one", "two"]
    assert all(r.loop is loop for r in rec.released)
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.resources_live) == (2, 0, {})


def test_ctrl_c_during_close_hook_closes_the_loop_and_settles_all() -> None:
    """KeyboardInterrupt while the close hook awaits a release: loop closed, nothing lost."""
    forced: list[Any] = []
    started: list[Any] = []

    async def slow(res: Any) -> None:
        started.append(res)
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    first: ResourceTemplate[Any] = ResourceTemplate(
        object, slow, name="first", force_release_func=forced.append
    )
    second: ResourceTemplate[Any] = ResourceTemplate(
        object, slow, name="second", force_release_func=forced.append
    )
    loop = asyncio.new_event_loop()

    async def use() -> None:
        await first.acquire()
        await second.acquire()

    loop.run_until_complete(use())
    with pytest.raises(KeyboardInterrupt):
        loop.close()
    assert loop.is_closed()
    assert len(started) == 1  # the newest was interrupted, the other forced without starting
    s = stats()
    assert (s.forced_releases, s.loops_tracked, s.resources_live) == (2, 0, {})
    _books_balance()


def test_ctrl_c_as_the_close_hook_creates_its_task_leaves_nothing_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KeyboardInterrupt just as the close hook's task is created, before the hook holds it (a
    task factory raises it, as a Ctrl-C landing there would): the task never runs, nothing is
    left never awaited, asyncio has no pending task to report, and everything is forced."""
    forced: list[Any] = []
    template = ResourceTemplate(object, name="held", force_release_func=forced.append)
    created: list[str] = []

    def interrupted_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        asyncio.Task(coro, loop=loop, **kwargs)  # made, and scheduled on the loop
        created.append(type(coro).__name__)
        raise KeyboardInterrupt

    loop = asyncio.new_event_loop()
    loop.run_until_complete(template.acquire())
    loop.set_task_factory(interrupted_factory)
    with pytest.raises(KeyboardInterrupt):
        loop.close()
    assert loop.is_closed()
    gc.collect()  # the task, if anything still held it
    assert created == ["Abandonable"]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert len(forced) == 1
    s = stats()
    assert (s.forced_releases, s.graceful_releases, s.loops_tracked) == (1, 0, 0)
    _books_balance()


def test_keyboard_interrupt_in_manager_exit_forces_the_rest() -> None:
    """A sync release raising KeyboardInterrupt: later resources are forced, none vanish, and
    before the interrupt leaves the manager's exit (not at the loop's end)."""
    forced: list[Any] = []
    when_it_left: list[tuple[int, int]] = []

    def interrupt(res: Any) -> None:
        raise KeyboardInterrupt

    older = ResourceTemplate(object, forced.append, name="older")
    newer = ResourceTemplate(object, interrupt, name="newer", force_release_func=forced.append)

    async def main() -> None:
        try:
            async with resource_manager():
                pass
        except KeyboardInterrupt:
            s = stats()
            when_it_left.append((s.forced_releases, s.graceful_releases))
            raise

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert when_it_left == [(2, 0)]
    s = stats()
    assert s.resources_live == {}
    assert s.acquisitions == 2
    assert len(forced) == 2  # the interrupted one and the one after it
    assert (s.forced_releases, s.graceful_releases) == (2, 0)
    del older, newer
    _books_balance()


def test_creation_in_flight_at_close_is_released_before_the_loop_closes() -> None:
    """A creation still running when close() starts ends before the loop closes."""
    released: list[asyncio.AbstractEventLoop] = []
    gate: list[asyncio.Future[None]] = []

    async def create() -> str:
        fut = asyncio.get_running_loop().create_future()
        gate.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            pass  # finishes all the same: the resource must still be released
        return "late"

    async def release(res: str) -> None:
        await asyncio.sleep(0)
        released.append(asyncio.get_running_loop())

    template = ResourceTemplate(create, release, name="late")
    loop = asyncio.new_event_loop()
    task = loop.create_task(template.acquire())
    loop.run_until_complete(asyncio.sleep(0))
    assert gate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop.close()
    assert released == [loop]
    assert task.done()
    assert stats().resources_live == {}
    _books_balance()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns that forking a multi-threaded process (the reaper is a thread) may deadlock.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_does_not_inherit_the_hot_path_cache() -> None:
    """A loop inherited through fork gives the child its own resource, not the parent's."""
    template = ResourceTemplate(os.getpid, name="pid")
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(template.acquire()) == os.getpid()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                got = loop.run_until_complete(template.acquire())
                code = 0 if got == os.getpid() and stats().acquisitions == 1 else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        result = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert result == b"\x00"
    finally:
        loop.close()


@exact_refcounts
def test_worker_thread_loops_are_not_kept_alive() -> None:
    """A thread that lives on and leaves loops unclosed: resources released on them, loops
    closed and then collected.

    While the thread is still alive, in one pass, without the pass running the collector. One
    warning for the thread, not one per loop.
    """
    released: list[str] = []

    class Client:  # refers to its loop, as a ClientSession does: resourceloop holds the loop
        def __init__(self) -> None:
            self.loop = asyncio.get_running_loop()

    async def release(res: Client) -> None:
        released.append("ok")

    async def make() -> Client:
        return Client()

    template = ResourceTemplate(make, release, name="per-task")
    probes: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    go, done = threading.Event(), threading.Event()

    def task_body() -> None:
        loop = asyncio.new_event_loop()  # never closed, as in many task bodies
        loop.run_until_complete(template.acquire())
        probes.append(weakref.ref(loop))

    def worker() -> None:
        for _ in range(20):
            task_body()
        done.set()
        go.wait(30)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert done.wait(30)
        with warnings.catch_warnings(record=True) as caught:
            # Not asyncio's own "unclosed event loop" warnings: they hold on to their loop.
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", UnclosedLoopWarning)
            reap()  # the thread moved on from 19 of them, which nothing else refers to
        assert thread.is_alive()
        # Every loop the thread has moved on from is released and closed; its newest one is
        # left behind only once the thread moves on again (or ends): it may run it again.
        assert len(released) == 19
        assert stats().resources_live == {"per-task": 1}
        assert [w.category for w in caught] == [UnclosedLoopWarning]
        del caught
        gc.collect()
        assert [probe() is None for probe in probes] == [True] * 19 + [False]
    finally:
        go.set()
        thread.join(30)
    reap()
    assert len(released) == 20
    assert stats().resources_live == {}
    _books_balance()


def _reaper_mid_release() -> tuple[
    asyncio.AbstractEventLoop, threading.Event, threading.Thread, list[str]
]:
    """An abandoned loop that a ``reap()`` thread is running, held inside a release.

    Returns the loop, the gate that lets the release finish, the reaping thread, and the
    list the release appends to once it finishes.
    """
    entered, gate = threading.Event(), threading.Event()
    released: list[str] = []

    async def release(res: Any) -> None:
        entered.set()
        await asyncio.to_thread(gate.wait, 30)
        released.append("graceful")

    template = ResourceTemplate(object, release, name="slow")
    loop, _ = abandon(template)
    reaper = threading.Thread(target=reap)
    reaper.start()
    assert entered.wait(30)
    return loop, gate, reaper, released


def test_owner_close_waits_for_the_reaper_instead_of_failing() -> None:
    """While the reaper runs an abandoned loop, the owner's close() waits, then closes it."""
    loop, gate, reaper, released = _reaper_mid_release()
    errors: list[BaseException] = []

    def close() -> None:
        try:
            loop.close()
        except BaseException as exc:  # pragma: no cover - the failure this test guards against
            errors.append(exc)

    closer = threading.Thread(target=close)
    closer.start()
    gate.set()
    closer.join(30)
    reaper.join(30)
    assert errors == []
    assert loop.is_closed()
    assert released == ["graceful"]


def test_acquisition_cycles_raise_instead_of_hanging() -> None:
    """A needs A, and A needs B needs A: a typed error naming the templates."""
    selfish: ResourceTemplate[Any]
    a: ResourceTemplate[Any]
    b: ResourceTemplate[Any]

    async def needs_itself() -> Any:
        return await selfish.acquire()

    async def needs_b() -> Any:
        return await b.acquire()

    async def needs_a() -> Any:
        return await a.acquire()

    selfish = ResourceTemplate(needs_itself, name="selfish")
    a = ResourceTemplate(needs_b, name="a")
    b = ResourceTemplate(needs_a, name="b")

    async def main() -> None:
        with pytest.raises(AcquisitionCycleError, match="'selfish' -> 'selfish'"):
            await asyncio.wait_for(selfish.acquire(), 10)
        with pytest.raises(AcquisitionCycleError, match="'a' -> 'b' -> 'a'"):
            await asyncio.wait_for(a.acquire(), 10)

    asyncio.run(main())
    assert stats().resources_live == {}


def test_blocking_sync_release_is_reported() -> None:
    """A sync release that blocks past release_timeout is named, with how long it blocked."""
    resourceloop.configure(release_timeout=0.05)
    template = ResourceTemplate(object, lambda r: time.sleep(0.1), name="blocker")

    async def main() -> None:
        async with resource_manager():
            await template.acquire()

    with pytest.warns(BlockingReleaseWarning, match=r"'blocker'.*blocked its thread for 0\.1"):
        asyncio.run(main())


def test_blocking_sync_release_that_then_fails_is_reported_and_counted() -> None:
    """A sync release that blocks past release_timeout and then raises: both are told (the
    warning names how long it blocked; the failure reaches the manager's exit)."""
    resourceloop.configure(release_timeout=0.05)

    def block_then_fail(resource: object) -> None:
        time.sleep(0.1)
        raise Fault("failed after blocking")

    template = ResourceTemplate(object, block_then_fail, name="blocker")

    async def main() -> None:
        async with resource_manager():
            await template.acquire()

    with (
        pytest.warns(BlockingReleaseWarning, match=r"'blocker'.*blocked its thread for 0\.1"),
        pytest.raises(ExceptionGroup) as raised,
    ):
        asyncio.run(main())
    assert [type(e) for e in raised.value.exceptions] == [Fault]
    assert stats().release_failures == 1
    _books_balance()


@pytest.mark.skipif(not hasattr(asyncio.Task, "cancelling"), reason="3.10 cannot tell (3.11+)")
@pytest.mark.parametrize("suspended", [False, True], ids=["at-once", "after-suspending"])
def test_a_release_that_ends_cancelled_on_its_own_is_a_failure_caused_by_it(
    suspended: bool,
) -> None:
    """A release whose own await ends cancelled (nobody cancelled the task) is a failure, and
    the error the manager's exit raises has that CancelledError as its cause."""

    async def ends_cancelled(resource: object) -> None:
        if suspended:
            await asyncio.sleep(0)
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        await cancelled

    template = ResourceTemplate(object, ends_cancelled, name="ends-cancelled")

    async def main() -> None:
        async with resource_manager():
            await template.acquire()

    with pytest.raises(ExceptionGroup) as raised:
        asyncio.run(main())
    [error] = raised.value.exceptions
    assert isinstance(error, RuntimeError)
    assert str(error) == "the release of 'ends-cancelled' was cancelled"
    assert isinstance(error.__cause__, asyncio.CancelledError)
    s = stats()
    assert (s.release_failures, s.forced_releases, s.resources_live) == (1, 0, {})
    _books_balance()


def test_blocking_force_release_is_reported(
    hook_disabled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A force function that blocks past release_timeout is named too, as a forced release."""
    monkeypatch.setenv("RESOURCELOOP_RELEASE_TIMEOUT", "0.05")
    resourceloop._config.reset_for_tests()  # read from the environment: no reaper wake-up
    template = ResourceTemplate(
        object, name="blocker", force_release_func=lambda r: time.sleep(0.1)
    )
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        loop.run_until_complete(template.acquire())
    loop.close()  # the hook is off: the reaper forces
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reap()
    blocking = [str(w.message) for w in caught if w.category is BlockingReleaseWarning]
    assert len(blocking) == 1
    assert "the forced release of 'blocker'" in blocking[0]
    assert stats().forced_releases == 1


class _Awaitable:
    """An awaitable that is not a coroutine (what some clients' ``close()`` returns)."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()  # suspends once, as real I/O would
        self.done.append("released")


def test_a_release_returning_a_plain_awaitable_is_awaited_on_the_loop() -> None:
    """A release function returning an awaitable object (not a coroutine) is awaited."""
    done: list[str] = []
    template = ResourceTemplate(object, lambda r: _Awaitable(done), name="awaitable")

    async def main() -> None:
        async with resource_manager():
            await template.acquire()
        assert done == ["released"]

    asyncio.run(main())
    s = stats()
    assert (s.graceful_releases, s.forced_releases, s.resources_live) == (1, 0, {})


def test_dropped_template_leaves_managers_but_its_resource_is_released() -> None:
    """A template nobody refers to is not acquired by managers; what it made is released."""
    released: list[Any] = []
    template: ResourceTemplate[Any] = ResourceTemplate(object, released.append, name="dropped")
    probe = weakref.ref(template)
    holder = asyncio.new_event_loop()
    holder.run_until_complete(template.acquire())  # one live resource keeps a reference
    del template
    gc.collect()
    assert probe() is None

    async def managed() -> dict[str, int]:
        async with resource_manager():
            return dict(stats().resources_live)

    assert asyncio.run(managed()) == {"dropped": 1}  # only the holder's, none acquired anew
    holder.close()
    assert len(released) == 1
    assert stats().resources_live == {}


def test_stats_report_the_reaper_thread() -> None:
    """stats().reaper_alive is true once a loop was tracked, and the thread survives failures."""

    def boom(res: Any) -> None:
        raise SystemExit("from a release function")

    template = ResourceTemplate(object, boom, name="exits")
    resourceloop.configure(close_hook=False)
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop.run_until_complete(template.acquire())
    loop.close()
    assert stats().reaper_alive
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resourceloop._runtime.reaper._pass()  # a pass raising SystemExit inside the thread
    assert stats().reaper_alive
    _books_balance()


def test_forced_release_closes_an_awaitable_it_cannot_run_and_says_so() -> None:
    """``release_func=lambda c: c.aclose()`` on the forced path: closed, not dropped, explained."""
    closed: list[str] = []

    class Client:
        async def aclose(self) -> None:  # pragma: no cover - never runs: the loop is gone
            closed.append("ran")

    template = ResourceTemplate(Client, lambda c: c.aclose(), name="lambda-client")
    resourceloop.configure(close_hook=False)
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop.run_until_complete(template.acquire())
    loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reap()
        gc.collect()  # a coroutine dropped unclosed would warn "never awaited" here
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "never awaited" in m], messages
    [forced] = [w for w in caught if w.category is ForcedReleaseWarning]
    text = str(forced.message)
    assert "returned an awaitable, which cannot run without the loop" in text
    assert "nothing was released" in text
    assert "pass force_release_func=" in text
    assert closed == []


class _ClosableAwaitable:
    """An awaitable that is neither a coroutine nor a future, with a ``close()``."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def __await__(self) -> Any:  # pragma: no cover - never awaited: the loop is gone
        self.log.append("ran")
        yield

    def close(self) -> None:
        self.log.append("closed")


def test_forced_release_closes_an_awaitable_object_it_cannot_run(hook_disabled: None) -> None:
    """An awaitable object (not a coroutine) that cannot run is closed through its close()."""
    log: list[str] = []
    template = ResourceTemplate(object, lambda r: _ClosableAwaitable(log), name="awaitable")
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        loop.run_until_complete(template.acquire())
    loop.close()
    with pytest.warns(ForcedReleaseWarning, match="returned an awaitable, which cannot run"):
        reap()
    assert log == ["closed"]
    s = stats()
    assert (s.forced_releases, s.release_failures, s.resources_live) == (1, 0, {})


def test_forced_release_leaves_a_future_of_the_closed_loop_alone(hook_disabled: None) -> None:
    """A release returning a future of its (closed) loop is forced without touching that loop:
    cancelling the future would schedule its callbacks there, and fail."""
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    future.add_done_callback(lambda f: None)  # as a caller awaiting it would have
    template = ResourceTemplate(object, lambda r: future, name="future")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        loop.run_until_complete(template.acquire())
    loop.close()
    with pytest.warns(ForcedReleaseWarning, match="returned an awaitable, which cannot run"):
        reap()
    assert not future.done()
    s = stats()
    assert (s.forced_releases, s.release_failures, s.resources_live) == (1, 0, {})


def test_forcing_on_an_idle_loop_cancels_the_future_a_release_returned() -> None:
    """Forced while its loop is open and idle (a graceful run that ended early), a release's
    future of that loop is cancelled: nothing of ours is left pending on the loop."""
    loop = asyncio.new_event_loop()
    futures: list[asyncio.Future[None]] = []

    def release(r: object) -> asyncio.Future[None]:
        futures.append(loop.create_future())
        return futures[-1]

    template = ResourceTemplate(object, release, name="future")
    try:
        loop.run_until_complete(template.acquire())
        state = registry.get(loop)
        assert state is not None
        batch = registry.take_all(state)
        with pytest.warns(ForcedReleaseWarning, match="returned an awaitable, which cannot run"):
            force_batch(batch, why="a test forces it")
        [future] = futures
        assert future.cancelled()
        s = stats()
        assert (s.forced_releases, s.release_failures, s.resources_live) == (1, 0, {})
    finally:
        loop.close()


# -- the release engine piece by piece -----------------------------------------------------------


def test_a_release_that_ignores_cancellation_ends_the_manager_exit_normally() -> None:
    """Past release_timeout a stubborn release is closed and forced; the task carries on."""
    resourceloop.configure(release_timeout=0.05)
    forced: list[Any] = []

    async def stubborn(res: Any) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores the deadline's cancellation; closing it ends it

    template = ResourceTemplate(object, stubborn, name="stubborn", force_release_func=forced.append)

    async def main() -> tuple[str, int]:
        async with resource_manager():
            await template.acquire()
        await asyncio.sleep(0)  # not cancelled: our cancellations were undone
        task = asyncio.current_task()
        assert task is not None
        cancelling = getattr(task, "cancelling", lambda: 0)  # 3.11+
        return "carried on", cancelling()

    with pytest.warns(ReleaseTimeoutWarning, match="'stubborn'"):
        assert asyncio.run(main()) == ("carried on", 0)
    assert len(forced) == 1
    s = stats()
    assert (s.forced_releases, s.release_timeouts, s.resources_live) == (1, 1, {})


def test_force_batch_skips_settled_items_and_forces_the_rest() -> None:
    """An item another owner settled is skipped; the ones after it are still forced."""
    forced: list[str] = []
    first = ResourceTemplate(lambda: "first", name="first", force_release_func=forced.append)
    second = ResourceTemplate(lambda: "second", name="second", force_release_func=forced.append)
    loop = asyncio.new_event_loop()

    async def use() -> None:
        await first.acquire()
        await second.acquire()

    loop.run_until_complete(use())
    state = registry.get(loop)
    assert state is not None
    batch = registry.take_all(state)
    newest, oldest = batch.items
    assert registry.settle(batch, newest, "graceful_releases")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForcedReleaseWarning)
        force_batch(batch, why="a test forces it")
    assert forced == ["first"]
    assert oldest.status == SETTLED
    loop.close()
    _books_balance()


def test_a_sync_release_returning_a_coroutine_is_closed_when_forced(hook_disabled: None) -> None:
    """Forced without its loop, a coroutine returned by a plain function is closed, not leaked."""
    ran: list[str] = []

    async def really_release(res: Any) -> None:  # pragma: no cover - it can never run
        ran.append("ran")

    def release(res: Any) -> Any:
        return really_release(res)  # a plain function that returns a coroutine

    template = ResourceTemplate(object, release, name="returns-coro")
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        loop.run_until_complete(template.acquire())
    loop.close()
    with pytest.warns(ForcedReleaseWarning, match="returned an awaitable, which cannot run"):
        reap()
    gc.collect()  # an unclosed coroutine would warn "never awaited" here (an error in tests)
    assert ran == []
    assert stats().forced_releases == 1


def test_warnings_point_at_the_users_code(hook_disabled: None) -> None:
    """A warning from an acquisition names the caller's file, not resourceloop's."""
    template = ResourceTemplate(object, name="t")
    loop = asyncio.new_event_loop()
    try:
        with pytest.warns(UngracefulLoopWarning) as record:
            loop.run_until_complete(template.acquire())
    finally:
        loop.close()
    assert [w.filename for w in record] == [__file__]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForcedReleaseWarning)
        reap()


@pytest.mark.skipif(not hasattr(asyncio.Task, "uncancel"), reason="Task.uncancel is 3.11+")
def test_a_release_that_swallows_the_deadline_leaves_the_task_uncancelled() -> None:
    """A release that catches the deadline's cancellation and returns: our cancel is undone."""
    resourceloop.configure(release_timeout=0.05)

    async def swallow(res: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # ends at once, cancellation swallowed

    template = ResourceTemplate(object, swallow, name="swallows")

    async def main() -> int:
        async with resource_manager():
            await template.acquire()
        task = asyncio.current_task()
        assert task is not None
        return int(task.cancelling())  # type: ignore[attr-defined, unused-ignore]

    assert asyncio.run(main()) == 0
    assert stats().resources_live == {}
    _books_balance()


def test_owner_run_until_complete_waits_for_the_reaper_instead_of_failing() -> None:
    """While the reaper runs an abandoned loop, run_until_complete() from elsewhere waits."""
    loop, gate, reaper, released = _reaper_mid_release()
    results: list[object] = []

    def run() -> None:
        work = asyncio.sleep(0, "ran")
        try:
            results.append(loop.run_until_complete(work))
        except BaseException as exc:  # pragma: no cover - the failure this test guards against
            work.close()  # never started: no "never awaited" warning in a later test
            results.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    gate.set()
    runner.join(30)
    reaper.join(30)
    try:
        assert results == ["ran"]
        assert released == ["graceful"]
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(asyncio.Task, "uncancel"), reason="Task.uncancel is 3.11+")
def test_a_cancellation_from_outside_as_a_relayed_release_is_given_up_on_goes_on() -> None:
    """At a loop's end in a task not ours (``relay``), a release is given up on at its bound;
    someone else cancelling the task at that very moment is not undone with the deadline's own
    cancellation: it propagates at once, and the release not begun stays in custody."""
    resourceloop.configure(release_timeout=0.05)
    tasks: list[asyncio.Task[Any]] = []
    released: list[str] = []

    async def stubborn(res: str) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores the deadline's cancellation; closing it ends it

    def force(res: str) -> None:
        released.append(f"forced {res}")
        tasks[0].cancel()  # from outside, while the release is being given up on

    older = ResourceTemplate(lambda: "older", released.append, name="older")
    stuck = ResourceTemplate(lambda: "stuck", stubborn, name="stuck", force_release_func=force)
    loop = asyncio.new_event_loop()
    try:

        async def hold() -> None:
            await older.acquire()
            await stuck.acquire()

        loop.run_until_complete(hold())
        state = registry.get(loop)
        assert state is not None
        batch = registry.take_all(state)
        task = loop.create_task(release_batch(batch, relay=True))
        with (
            pytest.warns(ReleaseTimeoutWarning, match="'stuck'"),
            pytest.raises(asyncio.CancelledError),
        ):
            loop.run_until_complete(task)
        assert task.cancelled()
        assert released == ["forced stuck"]  # the older one was not begun
        assert [(i.spec.name, i.status) for i in batch.items] == [
            ("stuck", SETTLED),
            ("older", HELD),
        ]
        with pytest.warns(ForcedReleaseWarning, match="'older'"):
            force_batch(batch, why="a test forces what the cancelled task left")
    finally:
        loop.close()
    s = stats()
    assert (s.forced_releases, s.release_timeouts, s.graceful_releases) == (2, 1, 0)
    _books_balance()


def test_release_on_loop_settles_everything_even_with_nothing_left_to_release() -> None:
    """``release_on_loop`` forces whatever it does not release before it returns, even when
    nothing is left to release gracefully: here only the batch of a manager exit cut short
    mid-release (the loop stopped under it), whose release it stops, then forces. The exit,
    cancelled afterwards, ends cancelled: a release stopped by another owner is no failure."""
    from resourceloop._force import abandon_task
    from resourceloop._loop_run import release_on_loop

    forced: list[str] = []
    ended: list[str] = []

    async def stops_the_loop(res: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.stop()
            await loop.create_future()  # never completed
        finally:
            ended.append(res)

    template = ResourceTemplate(
        lambda: "cut", stops_the_loop, name="cut", force_release_func=forced.append
    )

    async def main() -> None:
        async with resource_manager():
            await template.acquire()

    loop = asyncio.new_event_loop()
    task = loop.create_task(main())
    try:
        with pytest.raises(RuntimeError, match="stopped before Future completed"):
            loop.run_until_complete(task)
        state = registry.get(loop)
        assert state is not None
        [exiting] = registry.batches_of(state)  # the manager's, its one item releasing
        taken = registry.take_all(state)  # the store holds nothing more
        assert taken.items == []
        with pytest.warns(ForcedReleaseWarning, match="'cut'"):
            release_on_loop(loop, state, taken, why="a test ends it")
        assert (ended, forced) == (["cut"], ["cut"])  # stopped, then forced
        assert [item.status for item in exiting.items] == [SETTLED]
        assert registry.batches_of(state) == []
        # The manager's exit, still waiting on the release another owner stopped, cancelled:
        # it ends cancelled, with no failure of that release ("cannot reuse ... coroutine").
        # 3.10 cannot tell that cancellation from its own (no Task.cancelling): not checked.
        task.cancel()
        if hasattr(asyncio.Task, "uncancel"):
            with pytest.raises(asyncio.CancelledError):
                loop.run_until_complete(task)
    finally:
        abandon_task(task)  # if the test failed before it ended
        loop.close()
    s = stats()
    assert (s.forced_releases, s.graceful_releases, s.resources_live) == (1, 0, {})
    _books_balance()


@pytest.mark.skipif(not hasattr(asyncio.Task, "uncancel"), reason="Task.uncancel is 3.11+")
def test_a_cancellation_from_outside_as_a_manager_exit_s_release_is_given_up_on_goes_on() -> None:
    """In a manager's exit (the user's task), a release is given up on at its bound; the user
    cancelling the task at that very moment (an ``asyncio.timeout`` that expires then) is not
    undone with the deadline's own cancellation: it reaches the user at once, and the release
    not begun stays in custody, released at the loop's end."""
    resourceloop.configure(release_timeout=0.05)
    tasks: list[asyncio.Task[Any]] = []
    events: list[str] = []

    async def stubborn(res: str) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores the deadline's cancellation; closing it ends it

    def force(res: str) -> None:
        events.append(f"forced {res}")
        tasks[0].cancel()  # from outside, while the release is being given up on

    older = ResourceTemplate(
        lambda: "older", lambda r: events.append(f"released {r}"), name="older"
    )
    stuck = ResourceTemplate(lambda: "stuck", stubborn, name="stuck", force_release_func=force)

    async def main() -> None:
        try:
            async with resource_manager():
                await older.acquire()
                await stuck.acquire()
        except asyncio.CancelledError:
            events.append("exit cancelled")

    with pytest.warns(ReleaseTimeoutWarning, match="'stuck'"):
        asyncio.run(main())
    assert events == ["forced stuck", "exit cancelled", "released older"]
    s = stats()
    assert (s.forced_releases, s.release_timeouts, s.graceful_releases) == (1, 1, 1)
    _books_balance()
