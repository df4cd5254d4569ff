"""Tests for resourceloop under threads: many loops at once, each with its own resources."""

from __future__ import annotations

import asyncio
import collections
import gc
import importlib.util
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import attrs
import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_managed_loops, resource_manager

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def run_with_uvloop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Like asyncio.run, on a uvloop loop (works on 3.10 too)."""
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@attrs.define(eq=False)
class Conn:
    """A loop-bound resource: it owns a future of its loop, like a real client does."""

    name: str
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    closed: asyncio.Future[None]


@attrs.define(eq=False)
class Release:
    conn: Conn
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    managed: bool


@attrs.define(eq=False)
class Journal:
    """Creations and releases from every thread (list.append is atomic)."""

    created: list[Conn] = attrs.field(factory=list)
    released: list[Release] = attrs.field(factory=list)
    templates: list[ResourceTemplate[Conn]] = attrs.field(factory=list)

    def _new(self, name: str) -> Conn:
        loop = asyncio.get_running_loop()
        conn = Conn(name, loop, threading.current_thread(), loop.create_future())
        self.created.append(conn)
        return conn

    def _release(self, conn: Conn) -> None:
        loop = asyncio.get_running_loop()  # raises off-loop: a forced release would show
        conn.closed.set_result(None)  # set twice (a double release) would raise here
        self.released.append(
            Release(conn, loop, threading.current_thread(), loop in resource_managed_loops)
        )

    def sync_template(self, name: str) -> ResourceTemplate[Conn]:
        def make() -> Conn:
            return self._new(name)

        template = ResourceTemplate(make, self._release, name=name)
        self.templates.append(template)
        return template

    def async_template(self, name: str) -> ResourceTemplate[Conn]:
        async def make() -> Conn:
            await asyncio.sleep(0)
            return self._new(name)

        async def release(conn: Conn) -> None:
            await asyncio.sleep(0)
            self._release(conn)

        template = ResourceTemplate(make, release, name=name)
        self.templates.append(template)
        return template

    def check_each_released_once_on_its_own_loop(self, loops: int) -> None:
        per_template = collections.Counter(conn.name for conn in self.created)
        assert per_template == dict.fromkeys((t.name for t in self.templates), loops)
        # Exactly one resource per loop and template.
        assert len({(conn.name, conn.loop) for conn in self.created}) == len(self.created)
        assert len({conn.loop for conn in self.created}) == loops
        released = collections.Counter(id(r.conn) for r in self.released)
        assert sorted(released) == sorted(id(conn) for conn in self.created)
        assert set(released.values()) == {1}
        for release in self.released:
            assert (release.loop, release.thread) == (release.conn.loop, release.conn.thread)


@pytest.fixture
def journal() -> Journal:
    gc.collect()  # templates of earlier tests must not join the managers here
    return Journal()


@pytest.fixture
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Record warnings from every thread, so that a test can assert there were none."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def start_and_join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


def no_warning_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if r.name == "resourceloop" and r.levelno >= logging.WARN]


@pytest.mark.parametrize(
    ("runner", "n_threads"),
    [
        pytest.param(asyncio.run, 200, id="asyncio.run"),
        pytest.param(
            run_with_uvloop,
            100,
            id="uvloop",
            marks=pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed"),
        ),
    ],
)
def test_hundreds_of_threads_each_release_their_own_resources_once(
    journal: Journal,
    quiet: list[warnings.WarningMessage],
    caplog: pytest.LogCaptureFixture,
    runner: Callable[[Coroutine[Any, Any, Any]], Any],
    n_threads: int,
) -> None:
    """Threads racing first acquisitions each get one resource per template, freed on close."""
    templates = [
        journal.sync_template("sync"),
        journal.async_template("async-1"),
        journal.async_template("async-2"),
    ]
    start = threading.Barrier(n_threads, timeout=60)
    all_hold = threading.Barrier(n_threads, timeout=60)
    results: list[list[Conn]] = []

    async def main() -> None:
        start.wait()  # every thread's loop now races its first acquisitions
        got = await asyncio.gather(*(t.acquire() for t in templates for _ in range(3)))
        results.append(list(got))
        all_hold.wait()  # every loop holds its resources at the same time

    threads = [threading.Thread(target=runner, args=(main(),)) for _ in range(n_threads)]
    with caplog.at_level(logging.DEBUG, logger="resourceloop"):
        start_and_join(threads)

    assert len(results) == n_threads
    for got in results:
        # Three concurrent calls per template on one loop share one resource.
        assert [len({id(c) for c in got[i : i + 3]}) for i in (0, 3, 6)] == [1, 1, 1]
    journal.check_each_released_once_on_its_own_loop(n_threads)
    assert not any(r.managed for r in journal.released)  # released by the close hook
    stats = resourceloop.stats()
    assert stats.multithreaded
    assert stats.acquisitions == 3 * n_threads
    assert stats.graceful_releases == 3 * n_threads
    assert stats.forced_releases == 0
    assert stats.release_failures == 0
    assert stats.loops_tracked == 0
    assert stats.resources_live == {}
    assert quiet == []
    assert no_warning_logged(caplog)
    detected = [r for r in caplog.records if "multithreaded" in r.getMessage()]
    assert len(detected) == 1
    assert detected[0].levelno == logging.DEBUG


def test_threads_with_managers_release_on_exit_on_their_own_loop(
    journal: Journal, quiet: list[warnings.WarningMessage], caplog: pytest.LogCaptureFixture
) -> None:
    """The seed's pattern: a decorated coroutine per thread, released by its manager."""
    journal.sync_template("sync")
    journal.async_template("async")
    n_threads = 100
    start = threading.Barrier(n_threads, timeout=60)
    inside: list[bool] = []

    @resource_manager.as_decorator
    async def job() -> None:
        start.wait()
        inside.append(asyncio.get_running_loop() in resource_managed_loops)
        # The manager acquired every template on entry: these are the cached ones.
        for template in journal.templates:
            await template.acquire()

    def worker() -> None:
        asyncio.run(job())

    with caplog.at_level(logging.WARNING, logger="resourceloop"):
        start_and_join([threading.Thread(target=worker) for _ in range(n_threads)])
    assert inside == [True] * n_threads
    journal.check_each_released_once_on_its_own_loop(n_threads)
    assert all(r.managed for r in journal.released)  # released by the manager, not the hook
    stats = resourceloop.stats()
    assert stats.multithreaded
    assert stats.loops_tracked == 0
    assert stats.loops_managed == 0
    assert len(resource_managed_loops) == 0
    assert quiet == []
    assert no_warning_logged(caplog)


def test_many_threads_acquiring_on_one_shared_loop_share_one_creation(
    journal: Journal, quiet: list[warnings.WarningMessage]
) -> None:
    """Threads asking for the resource of one hub loop all get the one made on the hub."""
    template = journal.async_template("hub")
    hub = asyncio.new_event_loop()
    hub_thread = threading.Thread(target=hub.run_forever, name="hub")
    hub_thread.start()
    n_threads = 50
    start = threading.Barrier(n_threads, timeout=60)
    got: list[Conn] = []

    async def main() -> None:
        start.wait()
        got.append(await template.acquire(loop=hub))

    try:
        start_and_join(
            [threading.Thread(target=asyncio.run, args=(main(),)) for _ in range(n_threads)]
        )
        assert len(got) == n_threads
        assert len({id(conn) for conn in got}) == 1
        assert len(journal.created) == 1
        assert (got[0].loop, got[0].thread) == (hub, hub_thread)

        async def release() -> None:
            await template.release(loop=hub)

        asyncio.run(release())
        journal.check_each_released_once_on_its_own_loop(1)
    finally:
        hub.call_soon_threadsafe(hub.stop)
        hub_thread.join(30)
        hub.close()
    assert quiet == []
    assert resourceloop.stats().loops_tracked == 0


def _blocked_signals(thread: threading.Thread) -> int:
    """The signal mask of ``thread``, as Linux shows it in ``/proc``."""
    assert thread.native_id is not None
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")  # pragma: no cover


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_our_threads_leave_ctrl_c_to_the_main_thread() -> None:
    """The reaper and the portal block SIGINT and SIGTERM: the kernel delivers them elsewhere.

    A signal handed to a thread that does not block it leaves a main thread asleep in
    ``Event.wait()`` asleep until it runs Python code again: Ctrl-C would wait.
    """
    from resourceloop.sync import Portal

    asyncio.run(ResourceTemplate(object, name="starts-the-reaper").acquire())
    with Portal(name="mask-probe") as portal:
        portal.start()
        ours = [
            t
            for t in threading.enumerate()
            if t.name in ("resourceloop-reaper", "mask-probe") and t.is_alive()
        ]
        assert sorted(t.name for t in ours) == ["mask-probe", "resourceloop-reaper"]
        wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
        for thread in ours:
            assert _blocked_signals(thread) & wanted == wanted, thread.name
    assert _blocked_signals(threading.main_thread()) & wanted == 0
