"""Tests for the process-lifetime hooks of ``resourceloop._runtime``: interpreter exit and fork.

Exit is tested in a fresh interpreter (``sys.executable -c``): release functions print markers,
and stdout, stderr and the exit code are checked. Fork is tested both in-process (the child
reports through a pipe and leaves with ``os._exit``) and in a subprocess whose child exits
normally, so that its exit hook runs too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, _runtime, reap, stats
from resourceloop._registry import registry
from resourceloop.warnings import ForcedReleaseWarning, ResourceLoopWarning, UnclosedLoopWarning
from tests._env import child_env
from tests._fakes import Res
from tests._fork import fork_warning, in_child, needs_fork
from tests.conftest import exact_refcounts

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("slow_reaper")  # reap() drives the passes here


#: asyncio's own noise at exit, with or without resourceloop: when the interpreter's last
#: collection finalizes a never-closed loop's self-pipe socket before the loop itself, the loop's
#: ``__del__`` fails to close it (seen once on 3.10 in CI under load; ``_collect`` in
#: test_reaper.py tolerates the same). The scripts below leave loops unclosed on purpose.
_SELF_PIPE_NOISE = re.compile(
    r"Exception ignored (?:in|while calling deallocator):? "
    r"<function BaseEventLoop\.__del__ at 0x[0-9a-f]+>:?\n"
    r"Traceback \(most recent call last\):\n(?:  .*\n)+"
    r"ValueError: Invalid file descriptor: -1\n"
)


def _stderr(proc: subprocess.CompletedProcess[str]) -> str:
    """The script's stderr without asyncio's self-pipe noise (see ``_SELF_PIPE_NOISE``)."""
    return _SELF_PIPE_NOISE.sub("", proc.stderr)


def _run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,  # a guard only: a healthy run takes well under a second
        env=child_env(checkout_on_path=True),
        cwd=ROOT,
        check=False,
    )


# -- interpreter exit -------------------------------------------------------------------------

EXIT_SCRIPT = """
import asyncio, threading, warnings
import resourceloop
from resourceloop.warnings import ResourceLoopWarning

from tests._fakes import Res  # the checkout is the working directory

warnings.simplefilter("always", ResourceLoopWarning)  # any warning of ours shows on stderr


async def release(r):
    running = asyncio.get_running_loop()
    print(f"released {r.name} on-own-loop={running is r.loop}", flush=True)


def force(r):
    print(f"forced {r.name}", flush=True)


TAG = {"tag": None}
t = resourceloop.ResourceTemplate(lambda: Res(hold_loop=True, name=TAG["tag"]), release, name="t",
                                  force_release_func=force)


async def acquire(tag):
    TAG["tag"] = tag
    return await t.acquire()


# 1. an idle loop of the main thread, never closed
idle = asyncio.new_event_loop()
idle.run_until_complete(acquire("idle"))


# 2. a loop abandoned by a thread that ended without closing it
def abandon():
    loop = asyncio.new_event_loop()
    loop.run_until_complete(acquire("abandoned"))


th = threading.Thread(target=abandon)
th.start()
th.join()

# 3. a loop running in a daemon thread when the interpreter exits: never touched
started = threading.Event()


def serve():
    loop = asyncio.new_event_loop()

    async def main():
        await acquire("running")
        started.set()
        await asyncio.Event().wait()

    loop.run_until_complete(main())


threading.Thread(target=serve, daemon=True).start()
started.wait(10)

# 4. a loop closed normally: released by the close hook, before exit
asyncio.run(acquire("closed"))
print("main done", flush=True)
"""


def test_interpreter_exit_releases_idle_and_abandoned_loops() -> None:
    """At exit: idle and abandoned loops released on their loop, a running one untouched."""
    proc = _run_script(EXIT_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert _stderr(proc) == ""
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["released closed on-own-loop=True", "main done"]
    assert sorted(lines[2:]) == [
        "released abandoned on-own-loop=True",
        "released idle on-own-loop=True",
    ]


AIOHTTP_EXIT_SCRIPT = """
import asyncio, threading, warnings
import aiohttp
from aiohttp import web
import resourceloop

warnings.simplefilter("always", ResourceWarning)

# a real server on 127.0.0.1, in a daemon thread with its own loop
ready = threading.Event()
where = {}


def serve():
    loop = asyncio.new_event_loop()

    async def hello(request):
        return web.Response(text="hello")

    async def main():
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        where["port"] = runner.addresses[0][1]
        ready.set()
        await asyncio.Event().wait()

    loop.run_until_complete(main())


threading.Thread(target=serve, daemon=True).start()
ready.wait(10)


async def close_session(session):
    await session.close()
    print("session closed", flush=True)


sessions = resourceloop.ResourceTemplate(aiohttp.ClientSession, close_session, name="session")


async def get():
    session = await sessions.acquire()
    async with session.get(f"http://127.0.0.1:{where['port']}/") as response:
        assert await response.text() == "hello"


# an idle loop of the main thread, left unclosed with a pooled connection
idle = asyncio.new_event_loop()
idle.run_until_complete(get())


# a loop abandoned by its thread
def abandon():
    loop = asyncio.new_event_loop()
    loop.run_until_complete(get())


th = threading.Thread(target=abandon)
th.start()
th.join()
print("main done", flush=True)
"""


def test_interpreter_exit_closes_an_unclosed_client_session() -> None:
    """Real ClientSessions left open at exit are closed on their loops: no "Unclosed" noise."""
    pytest.importorskip("aiohttp")
    proc = _run_script(AIOHTTP_EXIT_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    # ResourceWarnings are all shown: the two never-closed loops' own "unclosed event loop" and
    # self-pipe ("family=1") warnings are the user's; no session, connector, transport or TCP
    # socket ("family=2") may be left open.
    assert "Unclosed" not in proc.stderr
    assert "transport" not in proc.stderr
    assert "family=2" not in proc.stderr
    assert "Traceback" not in _stderr(proc)
    assert "Exception ignored" not in _stderr(proc)
    assert proc.stdout.splitlines() == ["main done", "session closed", "session closed"]


HANGING_EXIT_SCRIPT = """
import asyncio
import resourceloop

resourceloop.configure(release_timeout=0.2)


async def hang(r):
    await asyncio.Event().wait()


t = resourceloop.ResourceTemplate(object, hang, name="hanging",
                                  force_release_func=lambda r: print("forced", flush=True))
loop = asyncio.new_event_loop()
loop.run_until_complete(t.acquire())
print("main done", flush=True)
"""


def test_interpreter_exit_with_a_hanging_release_does_not_hang() -> None:
    """A release that never ends is abandoned after release_timeout; the process exits 0."""
    proc = _run_script(HANGING_EXIT_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["main done", "forced"]
    assert "Traceback" not in _stderr(proc)
    assert "Exception ignored" not in _stderr(proc)


# -- fork ------------------------------------------------------------------------------------


@needs_fork
@fork_warning
def test_fork_child_starts_empty_and_never_releases_the_parents() -> None:
    """The child forgets the parent's loops, releases none of them, and works on its own."""
    calls: list[str] = []
    hold = {"loop": True}

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=hold["loop"])

    async def release(r: Res) -> None:
        # By id: the weak reference dies when the collector finds the loop, even if the reaper
        # then releases on it.
        own = id(asyncio.get_running_loop()) == r.loop_id
        calls.append(f"graceful made-by={r.pid} in={os.getpid()} own-loop={own}")

    def force(r: Res) -> None:
        calls.append(f"forced made-by={r.pid} in={os.getpid()}")

    t = ResourceTemplate(acquire, release, name="t", force_release_func=force)

    # Parent: an idle loop, an abandoned one, one closed behind the hook's back, and one
    # whose resource does not refer to it (collectable in the child).
    idle = asyncio.new_event_loop()
    idle.run_until_complete(t.acquire())
    abandoned: list[asyncio.AbstractEventLoop] = []

    def owner() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(t.acquire())
        abandoned.append(loop)

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join()
    closed = asyncio.new_event_loop()
    closed.run_until_complete(t.acquire())
    type(closed).close(closed)
    hold["loop"] = False
    droppable: list[asyncio.AbstractEventLoop] = [asyncio.new_event_loop()]
    droppable[0].run_until_complete(t.acquire())
    hold["loop"] = True
    assert stats().loops_tracked == 4
    assert stats().reaper_alive
    parent = os.getpid()

    def child() -> dict[str, Any]:
        report: dict[str, Any] = {"pid": os.getpid()}
        before = stats()
        report["before"] = [before.loops_tracked, before.resources_live, before.reaper_alive]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the dropped loop is unclosed
            droppable.clear()
            reap()
            gc.collect()
            reap()
        idle.close()  # closing an inherited loop in the child releases nothing either
        report["parent_calls"] = list(calls)

        async def main() -> None:
            await t.acquire()
            report["reaper_alive_inside"] = stats().reaper_alive

        asyncio.run(main())
        _runtime._at_exit()  # what the child's interpreter exit would do
        after = stats()
        report["after"] = [after.loops_tracked, after.resources_live, after.graceful_releases]
        report["calls"] = list(calls)
        return report

    report = in_child(child)
    child_pid = report["pid"]
    assert report["before"] == [0, {}, False]
    assert report["parent_calls"] == []
    assert report["reaper_alive_inside"] is True  # a fresh reaper for the child's own loops
    assert report["after"] == [0, {}, 1]
    assert report["calls"] == [f"graceful made-by={child_pid} in={child_pid} own-loop=True"]
    assert child_pid != parent

    # The parent still owns everything and releases each exactly once.
    assert calls == []
    assert stats().loops_tracked == 4
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        droppable.clear()
        gc.collect()
        reap()
    forced = [w for w in record if issubclass(w.category, ForcedReleaseWarning)]
    assert len(forced) == 2  # the closed loop and the collected one
    idle.close()
    abandoned[0].close()
    assert sorted(calls) == [
        f"forced made-by={parent} in={parent}",
        f"forced made-by={parent} in={parent}",
        f"graceful made-by={parent} in={parent} own-loop=True",
        f"graceful made-by={parent} in={parent} own-loop=True",
    ]
    assert stats().loops_tracked == 0


@needs_fork
@fork_warning
def test_fork_while_the_parent_is_mid_pass() -> None:
    """A child forked while a parent thread is inside a reaper pass can still reap and acquire.

    The parent's pass is held inside a force release function, so its pass lock is taken at
    the moment of the fork; a child that inherited that lock would deadlock in ``reap()``.
    """
    resourceloop.configure(close_hook=False)
    inside, leave = threading.Event(), threading.Event()

    def slow_force(r: object) -> None:
        inside.set()
        leave.wait(30)

    t = ResourceTemplate(object, name="slow", force_release_func=slow_force)

    async def main() -> object:
        return await t.acquire()

    def child() -> dict[str, Any]:
        # From the main thread: a new thread here could reuse the parent mid-pass thread's
        # ident and so "own" an inherited reentrant lock. A deadlock is caught by in_child.
        reap()
        mine = asyncio.run(main())
        return {"reaped": True, "acquired": mine is not None, "live": stats().resources_live}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        asyncio.run(main())
        passing = threading.Thread(target=reap)
        passing.start()
        try:
            assert inside.wait(10)
            report = in_child(child)
        finally:
            leave.set()
            passing.join()
    assert report == {"reaped": True, "acquired": True, "live": {"slow": 1}}
    assert stats().forced_releases == 1


def _leave_an_unclosed_loop(
    t: ResourceTemplate[Res],
) -> tuple[list[asyncio.AbstractEventLoop], asyncio.AbstractEventLoop]:
    """Acquire ``t`` on a loop this thread leaves unclosed, moving on to a new loop.

    Returns a list holding the old loop (clear it to drop the loop) and the new one (to close).
    """
    old = asyncio.new_event_loop()
    old.run_until_complete(t.acquire())
    newest = asyncio.new_event_loop()
    newest.run_until_complete(t.acquire())
    return [old], newest


def _unclosed_warnings(t: ResourceTemplate[Res]) -> int:
    """How many UnclosedLoopWarning a reap() gives for one loop this thread left unclosed."""
    dropped, newest = _leave_an_unclosed_loop(t)
    dropped.clear()
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", UnclosedLoopWarning)
            reap()  # nothing else refers to the dropped loop: released on it, closed
        return sum(issubclass(w.category, UnclosedLoopWarning) for w in record)
    finally:
        newest.close()


@exact_refcounts
@needs_fork
@fork_warning
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's own, about unclosed loops
def test_fork_child_warns_its_own_threads_again() -> None:
    """The once-per-thread UnclosedLoopWarning: the child's threads were never warned.

    The child's main thread has the ident of the parent's thread that forked, which the parent
    warned already.
    """
    t = ResourceTemplate(lambda: Res(asyncio.get_running_loop(), hold_loop=True), name="t")
    assert _unclosed_warnings(t) == 1
    assert _unclosed_warnings(t) == 0  # once per thread
    report = in_child(lambda: {"warnings": _unclosed_warnings(t)})
    assert report == {"warnings": 1}
    assert _unclosed_warnings(t) == 0


@exact_refcounts
@needs_fork
@fork_warning
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's own, about unclosed loops
def test_fork_child_inherits_no_collected_loop_awaiting_the_reaper() -> None:
    """Loops the parent has not ended yet are not the child's: neither counted nor released.

    One left behind by this thread and dropped (its resource refers to it, so resourceloop
    holds it until a pass ends it), and one garbage-collected (its resource does not refer to
    it: its state waits in ``collected`` for the next pass).
    """
    calls: list[str] = []
    hold = {"loop": True}

    async def acquire() -> Res:
        return Res(asyncio.get_running_loop(), hold_loop=hold["loop"])

    async def release(r: Res) -> None:
        calls.append(f"graceful in={os.getpid()}")

    def force(r: Res) -> None:
        calls.append(f"forced in={os.getpid()}")

    t = ResourceTemplate(acquire, release, name="t", force_release_func=force)
    dropped, newest = _leave_an_unclosed_loop(t)
    hold["loop"] = False
    collected = asyncio.new_event_loop()
    collected.run_until_complete(t.acquire())
    try:
        dropped.clear()
        probe = weakref.ref(collected)
        del collected
        gc.collect()
        assert probe() is None
        assert len(registry.collected) == 1  # handed over, not yet ended by a pass
        assert calls == []

        def child() -> dict[str, Any]:
            before = stats()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceLoopWarning)
                reap()
            return {"live": before.resources_live, "calls": list(calls)}

        assert in_child(child) == {"live": {}, "calls": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceLoopWarning)
            reap()
        parent = os.getpid()
        assert sorted(calls) == [f"forced in={parent}", f"graceful in={parent}"]
        assert stats().resources_live == {"t": 1}  # the newest loop's
    finally:
        newest.close()


FORK_EXIT_SCRIPT = """
import asyncio, os, sys, warnings
import resourceloop

warnings.filterwarnings("ignore", category=DeprecationWarning)  # fork with a thread, 3.12+


async def release(r):
    print(f"released {r} in={'parent' if os.getpid() == PARENT else 'child'}", flush=True)


PARENT = os.getpid()
t = resourceloop.ResourceTemplate(lambda: "parent's", release, name="t")
loop = asyncio.new_event_loop()
loop.run_until_complete(t.acquire())
assert resourceloop.stats().reaper_alive

pid = os.fork()
if pid == 0:
    t2 = resourceloop.ResourceTemplate(lambda: "child's", release, name="t2")
    mine = asyncio.new_event_loop()
    mine.run_until_complete(t2.acquire())  # idle at exit: released by the child's exit hook
    print("child done", flush=True)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("parent done", flush=True)
"""


@needs_fork
def test_fork_child_exit_releases_only_its_own() -> None:
    """A child exiting normally releases its own resources at exit, never the parent's."""
    proc = _run_script(FORK_EXIT_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert _stderr(proc) == ""
    assert proc.stdout.splitlines() == [
        "child done",
        "released child's in=child",
        "parent done",
        "released parent's in=parent",
    ]
