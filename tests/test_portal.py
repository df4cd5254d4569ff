"""Tests for `resourceloop.sync.Portal` and `async_to_sync(portal=...)`.

The portal is one event loop in a daemon thread shared by sync callers. These tests check what
users rely on: calls from many threads share the loop and its resources, managers inside calls
neither release nor conflict, every resource is released exactly once when the portal stops
(close, `with`, interpreter exit, fork child), also when a release or an acquisition is
interrupted by KeyboardInterrupt, SystemExit or CancelledError, and blocking calls from a
running loop are typed errors rather than deadlocks. Exit, fork and Ctrl-C run in fresh
interpreters whose environment is set explicitly.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_managed_loops, resource_manager, sync
from resourceloop._portal_loop import Phase
from resourceloop.sync import Portal, PortalCallError, PortalClosedError, async_to_sync

from ._fakes import Res
from ._loops import is_uvloop, needs_uvloop, new_uvloop

ROOT = Path(__file__).resolve().parent.parent

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# The resources are ``Res`` holding their loop; the release functions note in ``Res.ends``
# how each ended, so a test reads every release of one resource off the resource itself.


async def release_fake(fake: Res) -> None:
    fake.ends.append("on-loop" if asyncio.get_running_loop() is fake.made_on() else "elsewhere")


def force_fake(fake: Res) -> None:
    fake.ends.append("forced")


def fake_template(name: str = "fake", **kwargs: Any) -> ResourceTemplate[Res]:
    return ResourceTemplate(
        lambda: Res(hold_loop=True, name=name),
        release_fake,
        name=name,
        force_release_func=force_fake,
        **kwargs,
    )


def balanced() -> bool:
    """The books of `stats()`: every acquisition is released one way, or still live."""
    s = resourceloop.stats()
    live = sum(s.resources_live.values())
    return s.acquisitions == s.graceful_releases + s.forced_releases + s.release_failures + live


@pytest.fixture
def portal() -> Iterator[Portal]:
    p = Portal(name="test-portal")
    yield p
    p.close()


@pytest.fixture
def default_portal() -> Iterator[None]:
    """Close the process-wide default portal after the test, whatever it did."""
    yield
    sync.portal().close()


async def current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


# -- calls and threads --------------------------------------------------------------------------


def test_calls_share_one_loop_and_one_resource(portal: Portal) -> None:
    """Every call runs on the portal's loop, in its thread; the resource is made once."""
    template = fake_template()

    @portal.wrap
    async def use(i: int) -> tuple[int, Res, threading.Thread]:
        return i, await template.acquire(), threading.current_thread()

    results = [use(i) for i in range(5)]
    assert [i for i, _, _ in results] == list(range(5))
    assert len({id(fake) for _, fake, _ in results}) == 1
    assert {thread.name for _, _, thread in results} == {"test-portal"}
    assert resourceloop.stats().acquisitions == 1
    fake = results[0][1]
    assert fake.loop is not None
    assert not fake.loop.is_closed()
    portal.close()
    assert fake.ends == ["on-loop"]
    assert fake.loop.is_closed()
    assert balanced()


def test_calls_from_many_threads_run_concurrently(portal: Portal) -> None:
    """Eight threads meet on a Barrier inside their calls: they run on the loop at once."""
    template = fake_template()
    inside = threading.Barrier(8, timeout=30)
    release = asyncio.Event()  # created here, used only on the portal's loop (3.10+ binds late)
    count = {"in": 0}

    async def work(i: int) -> Res:
        fake = await template.acquire()
        count["in"] += 1
        if count["in"] == 8:
            release.set()
        await release.wait()  # all eight are suspended on the one loop together
        return fake

    def caller(i: int) -> Res:
        inside.wait()  # start together
        return portal.call(work, i)

    with ThreadPoolExecutor(8) as pool:
        fakes = list(pool.map(caller, range(8)))
    assert len({id(f) for f in fakes}) == 1
    assert resourceloop.stats().acquisitions == 1
    portal.close()
    assert fakes[0].ends == ["on-loop"]


def test_call_returns_exceptions_and_keeps_running(portal: Portal) -> None:
    """A call's exception reaches its caller (KeyboardInterrupt too); the portal runs on."""

    async def boom(exc: BaseException) -> None:
        raise exc

    with pytest.raises(LookupError, match="nope"):
        portal.call(boom, LookupError("nope"))
    with pytest.raises(KeyboardInterrupt):
        portal.call(boom, KeyboardInterrupt())
    with pytest.raises(SystemExit):
        portal.call(boom, SystemExit(3))
    with pytest.raises(TimeoutError):
        portal.call(boom, TimeoutError("its own timeout, not the wait's"))
    assert portal.running
    assert portal.call(current_loop) is portal.call(current_loop)


def test_call_copies_contextvars(portal: Portal) -> None:
    """The caller's context variables are visible in the call; changes stay there."""

    async def read_and_set() -> str:
        value = request_id.get()
        request_id.set("changed-in-call")
        return value

    def in_context() -> tuple[str, str]:
        request_id.set("abc")
        return portal.call(read_and_set), request_id.get()

    assert contextvars.copy_context().run(in_context) == ("abc", "abc")


def test_wrap_keeps_metadata_and_rejects_sync_functions(portal: Portal) -> None:
    """`wrap` keeps name, doc and signature; sync callables are a TypeError."""

    async def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    wrapped = portal.wrap(add)
    total: int = wrapped(2, b=3)
    assert total == 5
    assert wrapped.__name__ == "add"
    assert wrapped.__doc__ == "Add."
    with pytest.raises(TypeError, match="coroutine function"):
        portal.wrap(len)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coroutine function"):
        portal.call(lambda: 1)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="string"):
        Portal(name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Portal(loop_factory=3)  # type: ignore[arg-type]


def test_loop_factory(portal: Portal) -> None:
    """`loop_factory` makes the portal's loop."""
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        made.append(asyncio.new_event_loop())
        return made[-1]

    with Portal(loop_factory=factory) as own:
        assert own.call(current_loop) is made[0]
    assert made[0].is_closed()


@needs_uvloop
def test_portal_on_uvloop() -> None:
    """With uvloop's loop the portal shares one resource and releases it once, on its loop."""
    template = fake_template()

    async def use() -> tuple[bool, Res]:
        return is_uvloop(asyncio.get_running_loop()), await template.acquire()

    with Portal(loop_factory=new_uvloop) as own:
        (on_uvloop, first), (_, second) = own.call(use), own.call(use)
    assert on_uvloop
    assert first is second
    assert first.ends == ["on-loop"]
    assert balanced()


# -- async_to_sync ------------------------------------------------------------------------------


def test_async_to_sync_portal_forms(portal: Portal, default_portal: None) -> None:
    """`portal=True` uses the default portal, `portal=Portal` that one; plain stays per call."""

    @async_to_sync(portal=True)
    async def on_default() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    on_mine = async_to_sync(current_loop, portal=portal)
    per_call = async_to_sync(current_loop)
    assert on_default() is on_default() is sync.portal().call(current_loop)
    assert on_mine() is on_mine() is portal.call(current_loop)
    assert on_mine() is not on_default()
    first, second = per_call(), per_call()
    assert first is not second
    assert first.is_closed()
    assert second.is_closed()
    with pytest.raises(TypeError, match="portal="):
        async_to_sync(current_loop, portal="yes")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="coroutine function"):
        async_to_sync(len, portal=True)  # type: ignore[arg-type]


def test_default_portal_is_replaced_once_closed(default_portal: None) -> None:
    """A closed default portal gives way to a fresh one; an explicit closed one raises."""
    first = sync.portal()
    loop = first.call(current_loop)
    first.close()
    assert first.closed
    assert loop.is_closed()
    with pytest.raises(PortalClosedError, match="closed"):
        first.call(current_loop)
    second = sync.portal()
    assert second is not first
    assert second.call(current_loop) is not loop
    assert async_to_sync(current_loop, portal=True)() is second.call(current_loop)


# -- managers inside portal calls ---------------------------------------------------------------


def test_managers_in_calls_acquire_but_do_not_release(portal: Portal) -> None:
    """The seed's `async with resource_manager():` per call: concurrent, nothing released."""
    template = fake_template()
    lazy = fake_template("lazy", lazy=True)
    entered = threading.Barrier(4, timeout=30)
    done = asyncio.Event()
    inside = {"n": 0}

    @portal.wrap
    async def seed_example() -> tuple[Res, Res, bool]:
        async with resource_manager():  # four of these are active at once on the portal
            eager = lazy_fake = None
            eager = await template.acquire()
            lazy_fake = await lazy.acquire()
            inside["n"] += 1
            if inside["n"] == 4:
                done.set()
            await done.wait()
            managed = asyncio.get_running_loop() in resource_managed_loops
        return eager, lazy_fake, managed

    @portal.wrap
    @resource_manager.as_decorator
    async def decorated() -> Res:
        return await template.acquire()

    def caller() -> tuple[Res, Res, bool]:
        entered.wait()
        return seed_example()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: caller(), range(4)))
    eager, lazy_fake, managed = results[0]
    assert managed
    assert all(r[0] is eager and r[1] is lazy_fake for r in results)
    assert decorated() is eager
    assert eager.ends == []
    assert lazy_fake.ends == []
    assert resourceloop.stats().resources_live == {"fake": 1, "lazy": 1}
    portal.close()
    assert eager.ends == ["on-loop"]
    assert lazy_fake.ends == ["on-loop"]
    assert resourceloop.stats().graceful_releases == 2
    assert balanced()


def test_portal_start_acquires_non_lazy_templates(portal: Portal) -> None:
    """Starting enters the portal's manager: non-lazy templates are acquired up front."""
    template = fake_template()
    lazy = fake_template("lazy", lazy=True)
    portal.start()
    assert resourceloop.stats().resources_live == {"fake": 1}
    del template, lazy


def test_failed_start_is_raised_and_retried(portal: Portal) -> None:
    """A non-lazy template failing at start fails that call; the next call starts again."""
    attempts = {"n": 0}

    def flaky() -> Res:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("first start fails")
        return Res(hold_loop=True, name="flaky")

    template = ResourceTemplate(flaky, release_fake, name="flaky")
    with pytest.raises(ConnectionError, match="first start fails"):
        portal.call(current_loop)
    assert not portal.running
    assert not portal.closed
    loop = portal.call(current_loop)
    assert not loop.is_closed()
    assert attempts["n"] == 2
    portal.close()
    assert balanced()
    del template


# -- re-entrancy and misuse ---------------------------------------------------------------------


def test_call_from_the_portals_own_loop_is_an_error(portal: Portal) -> None:
    """Nested blocking call on the portal's loop: PortalCallError, not a deadlock."""

    async def nested() -> object:
        return portal.call(current_loop)

    with pytest.raises(PortalCallError, match=r"own event loop.*await the coroutine function"):
        portal.call(nested)

    async def close_from_inside() -> None:
        portal.close()

    with pytest.raises(PortalCallError, match="own thread"):
        portal.call(close_from_inside)
    assert portal.running


def test_call_from_a_running_loop_is_an_error(portal: Portal) -> None:
    """From another running loop: PortalCallError naming asyncio.to_thread; that works."""

    async def main() -> asyncio.AbstractEventLoop:
        with pytest.raises(PortalCallError, match=r"asyncio.to_thread\(portal.call"):
            portal.call(current_loop)
        with pytest.raises(PortalCallError):
            async_to_sync(current_loop, portal=portal)()
        return await asyncio.to_thread(portal.call, current_loop)

    assert asyncio.run(main()) is portal.call(current_loop)


def test_close_is_idempotent_and_refuses_later_calls() -> None:
    """close() twice is fine; start/call afterwards raise; a never-started portal closes."""
    fresh = Portal()
    fresh.close()
    assert fresh.closed
    with pytest.raises(PortalClosedError):
        fresh.start()
    with Portal() as used:
        loop = used.call(current_loop)
    assert used.closed
    assert loop.is_closed()
    used.close()
    with pytest.raises(PortalClosedError, match=r"create a new Portal"):
        used.call(current_loop)
    assert "closed" in repr(used)


class BlockedCall:
    """A coroutine that waits until cancelled, called through a portal from its own thread."""

    def __init__(self, portal: Portal, *, name: str = "caller") -> None:
        self.portal = portal
        self.started = threading.Event()  # it runs on the portal
        self.cancelled = threading.Event()  # its cancellation reached it
        self.caught: list[BaseException] = []  # what the calling thread got
        self.thread = threading.Thread(target=self._call, name=name)

    async def forever(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def _call(self) -> None:
        try:
            self.portal.call(self.forever)
        except BaseException as exc:
            self.caught.append(exc)

    def join(self) -> list[type[BaseException]]:
        """Wait for the calling thread; the types of what it caught."""
        self.thread.join(30)
        assert not self.thread.is_alive()
        return [type(exc) for exc in self.caught]


def test_close_cancels_running_calls(portal: Portal) -> None:
    """A call still running at close is cancelled; its caller gets PortalClosedError."""
    call = BlockedCall(portal)
    call.thread.start()
    assert call.started.wait(30)
    portal.close()
    assert call.join() == [PortalClosedError]
    assert call.cancelled.is_set()


def test_caller_exception_cancels_the_remote_call(portal: Portal) -> None:
    """An exception raised in the waiting caller (as Ctrl-C is) cancels the coroutine.

    The caller is a worker thread and the exception is raised into it asynchronously, exactly
    where a signal would arrive; the real SIGINT on the main thread is tested in a subprocess.
    """
    import ctypes

    call = BlockedCall(portal)
    call.thread.start()
    assert call.started.wait(30)
    assert call.thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(call.thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    assert call.join() == [KeyboardInterrupt]
    assert call.cancelled.wait(30)
    assert portal.running


def test_ctrl_c_during_the_hand_off_cancels_the_call() -> None:
    """Ctrl-C that lands inside ``call_soon_threadsafe`` (the call already handed over).

    Waking the portal's loop writes to its self-pipe with the GIL released, so the call can
    start on the portal before the caller's hand-off returns: an interrupt at that instant
    must cancel it as one during the wait does, not leave it running with nobody waiting.
    """
    calls: list[BlockedCall] = []

    class InterruptedHandOff(asyncio.SelectorEventLoop):
        def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            handle = super().call_soon_threadsafe(*args, **kwargs)
            if calls and threading.current_thread() is calls[0].thread:
                assert calls.pop().started.wait(30)  # it runs on the portal before we return
                raise KeyboardInterrupt
            return handle

    with Portal(name="hand-off", loop_factory=InterruptedHandOff) as hand_off:
        hand_off.start()
        call = BlockedCall(hand_off)
        calls.append(call)
        call.thread.start()
        assert call.join() == [KeyboardInterrupt]
        assert call.cancelled.wait(30)
        assert hand_off.running


# -- exactly once when the portal stops, with faults injected -----------------------------------

POINTS = ["release-call", "release-await", "acquire-call", "acquire-await"]
FAULTS = [KeyboardInterrupt, SystemExit, asyncio.CancelledError]


class Injected:
    """Templates whose release or acquisition raises ``fault`` at ``point`` while stopping."""

    def __init__(self, point: str, fault: type[BaseException]) -> None:
        self.point = point
        self.fault = fault
        self.made: list[Res] = []
        self.attempts: dict[str, int] = {}
        self.templates = [self._template(name) for name in ("first", "middle", "last")]
        self.late = self._template("late", lazy=True)
        self.stuck = self._template("stuck", lazy=True)
        self.stuck_started = threading.Event()

    def _template(self, name: str, lazy: bool = False) -> ResourceTemplate[Res]:
        def release(fake: Res) -> Any:
            self.attempts[fake.name] = self.attempts.get(fake.name, 0) + 1
            fake.ends.append("called")
            if self.point == "release-call" and fake.name == "middle":
                raise self.fault()
            return self._release_async(fake)

        async def acquire() -> Res:
            if name == "stuck":
                self.stuck_started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    if self.point == "acquire-await":
                        raise self.fault() from None
                    raise
            if name == "late" and self.point == "acquire-call":
                raise self.fault()
            fake = Res(hold_loop=True, name=name)
            self.made.append(fake)
            return fake

        return ResourceTemplate(
            acquire, release, name=name, lazy=lazy, force_release_func=force_fake
        )

    async def _release_async(self, fake: Res) -> None:
        await asyncio.sleep(0)
        if self.point == "release-await" and fake.name == "middle":
            raise self.fault()

    async def stuck_call(self) -> None:
        """A call still acquiring when the portal stops; its cleanup acquires `late`."""
        try:
            await self.stuck.acquire()
        finally:
            await self.late.acquire()

    def check(self) -> None:
        for fake in self.made:
            # Exactly once: one release call (it succeeded or failed), one forced release, or a
            # release call that a KeyboardInterrupt, SystemExit or cancellation cut short and
            # that was then forced (custody: a graceful release that cannot finish is forced).
            assert fake.ends in (["called"], ["forced"], ["called", "forced"]), (
                fake.name,
                fake.ends,
            )
            if fake.name != "middle":  # only the faulty one can be cut short
                assert len(fake.ends) == 1, (fake.name, fake.ends)
        assert {f.name for f in self.made} >= {"first", "middle", "last"}
        assert balanced(), resourceloop.stats()
        assert resourceloop.stats().resources_live == {}


def _stop_with_injection(
    how: str, point: str, fault: type[BaseException]
) -> tuple[BaseException | None, BaseException]:
    inj = Injected(point, fault)
    portal = Portal()
    portal.start()
    caller_errors: list[BaseException] = []

    def caller() -> None:
        try:
            portal.call(inj.stuck_call)
        except BaseException as exc:
            caller_errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert inj.stuck_started.wait(30)
    raised: BaseException | None = None
    try:
        if how == "with":
            with portal:
                pass
        else:
            portal.close()
    except BaseException as exc:
        raised = exc
    thread.join(30)
    assert not thread.is_alive()
    assert len(caller_errors) == 1
    assert portal.closed
    inj.check()
    return raised, caller_errors[0]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("how", ["close", "with"])
@pytest.mark.filterwarnings("ignore::resourceloop.warnings.ResourceLoopWarning")
def test_stop_releases_exactly_once_under_faults(
    how: str, point: str, fault: type[BaseException]
) -> None:
    """Close or `with` exit, a fault at each point: each resource released once, books balance.

    KeyboardInterrupt and SystemExit reach the closer, after the releases; CancelledError is
    the release's or acquisition's own failure and is not raised out of close().
    """
    raised, caller_error = _stop_with_injection(how, point, fault)
    if fault is asyncio.CancelledError:
        assert raised is None
        assert isinstance(caller_error, PortalClosedError)
    elif point == "acquire-call":
        # Raised in the creation task the call's cleanup awaits: the call's caller gets it,
        # and, as it escaped the portal's loop while stopping, the closer too.
        assert isinstance(raised, fault)
        assert isinstance(caller_error, fault)
    else:
        assert isinstance(raised, fault)
        assert isinstance(caller_error, PortalClosedError)


def test_stop_without_faults_releases_everything_gracefully() -> None:
    """The same setup without a fault: all graceful, on the portal's loop."""
    raised, caller_error = _stop_with_injection("close", "none", KeyboardInterrupt)
    assert raised is None
    assert isinstance(caller_error, PortalClosedError)
    s = resourceloop.stats()
    assert s.forced_releases == 0
    assert s.release_failures == 0
    assert s.graceful_releases == s.acquisitions


# -- interpreter exit, fork and Ctrl-C, in fresh interpreters -----------------------------------


def _child_env() -> dict[str, str]:
    """An explicit environment: the parent's -X dev or PYTHONWARNINGS must not leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RESOURCELOOP_", "PYTHON")) and k != "PYTEST_ADDOPTS"
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONWARNINGS"] = "always::ResourceWarning"
    return env


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,  # a guard only: a healthy run takes well under a second
        env=_child_env(),
        cwd=ROOT,
        check=False,
    )


CHILD_PRELUDE = """
import asyncio, os, sys, threading
import resourceloop
from resourceloop import ResourceTemplate, resource_manager
from resourceloop.sync import async_to_sync, portal
from tests._fakes import Res  # the checkout is on PYTHONPATH

POINT, FAULT = sys.argv[1], {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit,
                             "CancelledError": asyncio.CancelledError, "none": None}[sys.argv[2]]
STARTED = threading.Event()
CALLER_DONE = threading.Event()

def template(name, lazy=False):
    def release(fake):
        print(f"release {fake.name} {os.getpid()}", flush=True)
        if POINT == "release-call" and name == "middle":
            raise FAULT()
        async def finish():
            await asyncio.sleep(0)
            if POINT == "release-await" and name == "middle":
                raise FAULT()
        return finish()

    def force(fake):
        print(f"forced {fake.name} {os.getpid()}", flush=True)

    async def acquire():
        if name == "stuck":
            STARTED.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if POINT == "acquire-await":
                    raise FAULT() from None
                raise
        if name == "late" and POINT == "acquire-call":
            raise FAULT()
        print(f"acquire {name} {os.getpid()}", flush=True)
        return Res(hold_loop=True, name=name)

    return ResourceTemplate(acquire, release, name=name, lazy=lazy, force_release_func=force)

TEMPLATES = [template(n) for n in ("first", "middle", "last")]
LATE, STUCK = template("late", lazy=True), template("stuck", lazy=True)

@async_to_sync(portal=True)
async def use():
    async with resource_manager():
        return [await t.acquire() for t in TEMPLATES]

@async_to_sync(portal=True)
async def stuck_call():
    try:
        await STUCK.acquire()
    finally:
        await LATE.acquire()

def start_stuck_call():
    def run():
        try:
            stuck_call()
        except BaseException as exc:
            print(f"caller got {type(exc).__name__}", flush=True)
        finally:
            CALLER_DONE.set()
    threading.Thread(target=run, daemon=True).start()
    STARTED.wait()

def books(when):
    # The caller is a daemon thread: wait for its report before the interpreter ends.
    if STARTED.is_set():
        print(f"caller reported {CALLER_DONE.wait(60)}", flush=True)
    s = resourceloop.stats()
    live = sum(s.resources_live.values())
    ok = s.acquisitions == s.graceful_releases + s.forced_releases + s.release_failures + live
    print(f"books {when} {os.getpid()} ok={ok} live={live} acq={s.acquisitions}", flush=True)
"""

EXIT_SCRIPT = (
    CHILD_PRELUDE
    + """
import atexit
atexit.register(books, "after-exit")  # registered first, so it runs after the portal closed
use()
start_stuck_call()
print("ready", flush=True)
"""
)


def _check_released_once(lines: list[str], pid: str | None = None) -> None:
    """Each resource ends once: released, or forced (after a release cut short, for middle)."""
    mine = [ln for ln in lines if pid is None or ln.endswith(f" {pid}")]
    acquired = [ln.split()[1] for ln in mine if ln.startswith("acquire ")]
    called = [ln.split()[1] for ln in mine if ln.startswith("release ")]
    forced = [ln.split()[1] for ln in mine if ln.startswith("forced ")]
    assert len(set(called)) == len(called), lines
    assert len(set(forced)) == len(forced), lines
    assert set(called) & set(forced) <= {"middle"}, lines
    assert sorted(acquired) == sorted(set(called) | set(forced)), lines
    assert {"first", "middle", "last"} <= set(acquired)


@pytest.mark.parametrize(
    ("point", "fault"),
    [("none", "none")] + [(p, f.__name__) for p in POINTS for f in FAULTS],
)
def test_interpreter_exit_releases_exactly_once(point: str, fault: str) -> None:
    """At exit the default portal closes: each resource released once, books balanced."""
    result = _run_script(EXIT_SCRIPT, point, fault)
    lines = result.stdout.splitlines()
    assert "ready" in lines, result.stderr
    _check_released_once(lines)
    [books] = [ln for ln in lines if ln.startswith("books after-exit")]
    assert "ok=True live=0" in books, (books, result.stderr)
    caller = fault if point == "acquire-call" and fault != "CancelledError" else "PortalClosedError"
    assert f"caller got {caller}" in lines
    if point == "none":
        assert not [ln for ln in lines if ln.startswith("forced")]
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr


FORK_SCRIPT = (
    CHILD_PRELUDE
    + """
import json
parent_fakes = use()           # the parent's portal holds three resources
parent_portal = portal()
pid = os.fork()
if pid == 0:
    assert portal() is not parent_portal, "the child must get a fresh default portal"
    try:
        parent_portal.close()  # a no-op in the child: never touches the parent's loop
        parent_portal.call(asyncio.sleep, 0)
    except Exception as exc:
        print(f"child parent-portal {type(exc).__name__}", flush=True)
    import atexit
    atexit.register(books, "child-after-exit")  # before the child's portal: runs after it
    use()                      # the child's own resources, on the child's own portal
    start_stuck_call()
    print("child ready", flush=True)
    sys.exit(0)                # exit handlers run: the child's portal closes
POINT = "none"                 # faults are injected in the child only
_, status = os.waitpid(pid, 0)
print(f"child status {status}", flush=True)
print(f"parent loop open {not parent_fakes[0].loop.is_closed()}", flush=True)
parent_portal.close()
books("parent-after-close")
"""
)


@pytest.mark.parametrize(
    ("point", "fault"),
    [("none", "none")] + [(p, f.__name__) for p in POINTS for f in FAULTS],
)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_portal(point: str, fault: str) -> None:
    """The child never touches the parent's portal, gets a fresh one, releases its own once."""
    result = _run_script(FORK_SCRIPT, point, fault)
    lines = result.stdout.splitlines()
    assert "child ready" in lines, (result.stdout, result.stderr)
    pids = {ln.split()[-1] for ln in lines if ln.startswith("acquire ")}
    assert len(pids) == 2
    for each in pids:
        _check_released_once(lines, each)
    assert "child parent-portal PortalClosedError" in lines
    assert "parent loop open True" in lines
    [child_books] = [ln for ln in lines if ln.startswith("books child-after-exit")]
    assert "ok=True live=0" in child_books, lines
    [parent_books] = [ln for ln in lines if ln.startswith("books parent-after-close")]
    assert "ok=True live=0" in parent_books
    # the parent's resources were released by the parent only, gracefully
    parent_pid = parent_books.split()[2]
    parent_lines = [ln for ln in lines if ln.endswith(parent_pid)]
    assert sorted(ln.split()[1] for ln in parent_lines if ln.startswith("release ")) == [
        "first",
        "last",
        "middle",
    ]
    assert not [ln for ln in parent_lines if ln.startswith("forced")]


CTRL_C_SCRIPT = """
import asyncio, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal has it, not inherited
import resourceloop
from resourceloop.sync import Portal

cancelled = threading.Event()
started = threading.Event()

async def slow():
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise

portal = Portal()
threading.Thread(target=lambda: (started.wait(), os.kill(os.getpid(), signal.SIGINT)),
                 daemon=True).start()
begin = time.monotonic()
try:
    portal.call(slow)
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - begin:.3f}", flush=True)
print(f"cancelled {cancelled.wait(30)}", flush=True)
print(f"still running {portal.running}", flush=True)
portal.close()
print(f"closed {portal.closed}", flush=True)
"""


def test_ctrl_c_cancels_the_call_and_returns_promptly() -> None:
    """A real SIGINT while the main thread waits: KeyboardInterrupt, remote call cancelled.

    The signal is sent once the coroutine is known to be running on the portal (an Event set
    inside it), never after a sleep.
    """
    result = _run_script(CTRL_C_SCRIPT)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    [interrupted] = [ln for ln in lines if ln.startswith("interrupted after")]
    assert float(interrupted.split()[-1]) < 5.0  # the wait slices are 0.25 s
    assert "cancelled True" in lines
    assert "still running True" in lines
    assert "closed True" in lines


CTRL_C_FROM_PARENT = """
import asyncio, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal has it, not inherited
from resourceloop.sync import async_to_sync

@async_to_sync(portal=True)
async def slow():
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        print("coroutine cancelled", flush=True)

try:
    slow()
except KeyboardInterrupt:
    print("caller interrupted", flush=True)
"""


def test_sigint_from_the_parent_process() -> None:
    """SIGINT sent by another process after the readiness line: the call ends, cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_FROM_PARENT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "caller interrupted" in out.splitlines()
    assert "coroutine cancelled" in out.splitlines()
    assert err == ""


# -- closing from the portal's own executor, and bounded waits ------------------------------------

CLOSE_FROM_EXECUTOR = """
import asyncio, sys, threading
import resourceloop
from resourceloop import ResourceTemplate
from resourceloop.sync import Portal, PortalClosedError, sync_to_async

released = []
TEMPLATE = ResourceTemplate(lambda: "session", lambda s: released.append(s), name="session")
portal = Portal()

async def shut_down_from_sync_code(how):
    await TEMPLATE.acquire()
    if how == "to_thread":
        await asyncio.to_thread(portal.close)
    else:
        await sync_to_async(portal.close)()
    return "returned"

try:
    print(f"call {portal.call(shut_down_from_sync_code, sys.argv[1])}", flush=True)
except PortalClosedError:
    print("call PortalClosedError", flush=True)
portal.close()  # from the main thread: waits until the portal's thread is done
print(f"closed {portal.closed} running {portal.running} released {released}", flush=True)
"""


@pytest.mark.parametrize("how", ["to_thread", "sync_to_async"])
def test_close_from_the_portals_own_executor_does_not_wait_for_itself(how: str) -> None:
    """Sync code the portal runs in its default executor closes it: no deadlock, exit works.

    Before, that close() waited for the portal's thread, which waited (in
    ``shutdown_default_executor``) for the executor thread running that close(): the portal
    stayed "closing" and the process never exited (the subprocess times out).
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLOSE_FROM_EXECUTOR), how],
        capture_output=True,
        text=True,
        timeout=60,  # a guard only: a healthy run takes well under a second
        env=_child_env(),
        cwd=ROOT,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0] in ("call returned", "call PortalClosedError"), lines
    assert "closed True running False released ['session']" in lines, lines
    assert result.stderr == "", result.stderr


def test_close_from_the_executor_while_another_thread_closes(portal: Portal) -> None:
    """A second close() from the portal's executor, while one is closing: returns at once."""
    in_job, closing = threading.Event(), threading.Event()
    outcome: list[object] = []

    def sync_job() -> None:
        in_job.set()
        closing.wait()
        portal.close()  # the portal is "closing" already: must not wait for its own thread
        outcome.append(portal.closed)

    async def body() -> None:
        await asyncio.to_thread(sync_job)

    caller = threading.Thread(target=lambda: _swallow(portal.call, body))
    caller.start()
    in_job.wait()
    closer = threading.Thread(target=portal.close)
    closer.start()
    _wait_until(lambda: portal._phase is Phase.CLOSING)
    closing.set()
    closer.join(60)
    caller.join(60)
    assert not closer.is_alive(), "close() deadlocked on the executor thread"
    assert outcome == [True]
    assert not portal.running


def test_close_bounds_the_wait_for_a_stuck_executor_job() -> None:
    """A job stuck in the portal's executor delays close() by about release_timeout, no more.

    ``release_timeout`` is small here so that the bound is reached; whether close() returned
    is checked, never how long it took.
    """
    resourceloop.configure(release_timeout=0.1)
    portal = Portal(name="stuck-executor")
    started, unblock = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        unblock.wait()

    async def body() -> None:
        await asyncio.to_thread(stuck)

    caller = threading.Thread(target=lambda: _swallow(portal.call, body))
    caller.start()
    closer = threading.Thread(target=portal.close)
    try:
        started.wait()
        closer.start()
        closer.join(60)  # a guard only: the bound is release_timeout
        assert not closer.is_alive(), "close() waited for the stuck executor job"
        assert portal.closed
        assert not portal.running
    finally:
        unblock.set()
        caller.join(60)
        if closer.is_alive():
            closer.join(60)


def _swallow(func: Any, *args: Any) -> None:
    try:
        func(*args)
    except (PortalClosedError, asyncio.CancelledError):
        pass


def _wait_until(predicate: Any) -> None:
    """Wait for a state another thread sets; the deadline only matters when the code is broken."""
    event = threading.Event()
    for _ in range(6000):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError("the state was never reached")


FORK_WITH_HELD_LOCKS = """
import asyncio, os, sys, time
from resourceloop import sync
from resourceloop import _portal_process
from resourceloop.sync import Portal

async def pid():
    return os.getpid()

unstarted = Portal(name="unstarted")
# As if other threads were inside portal() and Portal.start() at the moment of the fork: the
# child inherits both locks held, and no thread of its own will ever release them.
_portal_process._process.lock.acquire()
unstarted._lock.acquire()
child = os.fork()
if child == 0:
    try:
        ok = sync.portal().call(pid) == os.getpid() and unstarted.call(pid) == os.getpid()
        sync.portal().close()
        unstarted.close()
        print(f"child ok {ok}", flush=True)
    finally:
        os._exit(0)
deadline = time.monotonic() + 30  # a guard only: the child needs well under a second
while True:
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        print(f"child exit {os.waitstatus_to_exitcode(status)}", flush=True)
        break
    if time.monotonic() > deadline:
        os.kill(child, 9)
        os.waitpid(child, 0)
        print("child hung", flush=True)
        break
    time.sleep(0.05)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_never_inherits_a_held_portal_lock() -> None:
    """Locks held by other parent threads at fork time are fresh in the child.

    The parent never started a portal, so before, no fork handler was installed at all; and
    a portal that was never started kept the parent's lock.
    """
    result = _run_script(FORK_WITH_HELD_LOCKS)
    lines = result.stdout.splitlines()
    assert lines == ["child ok True", "child exit 0"], (lines, result.stderr)


def test_manager_templates_in_portal_calls(portal: Portal) -> None:
    """A call's ResourceManager(templates=...) acquires only those on the portal's loop."""
    lazy_engine = fake_template("engine", lazy=True)
    other = fake_template("other-lazy", lazy=True)

    async def task() -> list[str]:
        async with resource_manager(templates=[lazy_engine]):
            return [f.name for f in [await lazy_engine.acquire()]]

    assert portal.call(task) == ["engine"]
    portal.close()
    assert other.name == "other-lazy"
    assert resourceloop.live_resources() == []
    assert resourceloop.stats().acquisitions == 1


def test_close_from_the_executor_while_the_portal_starts() -> None:
    """close() from the executor during the start (a non-lazy acquire): start refused, closed.

    The acquisition runs while the portal is "starting"; the close() inside it must not wait
    for the start it is part of, and the start must end in a closed portal, not a running one.
    """
    portal = Portal(name="closing-while-starting")
    made: list[str] = []

    async def acquire() -> str:
        await asyncio.to_thread(portal.close)  # sync code in the portal's executor
        made.append("acquired")
        return "resource"

    template = ResourceTemplate(acquire, lambda _: made.append("released"), name="starter")
    with pytest.raises(PortalClosedError):
        portal.start()
    portal.close()  # from this thread: waits until the portal's thread is done
    assert portal.closed
    assert not portal.running
    assert made == ["acquired", "released"]
    assert template.name == "starter"
