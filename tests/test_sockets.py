"""Sockets come back: real ``aiohttp.ClientSession`` resources against a real local server.

A real aiohttp server runs on 127.0.0.1 (ephemeral port) in a background thread with its own
loop. Each test does real GETs through per-loop sessions, then proves every client socket is
closed by counting ``/proc/self/fd`` on each path that ends a loop: the manager, the close hook,
the reaper (loop closed without the hook: ``close_session_now`` closes the sockets without the
loop) and the reaper on an abandoned thread's loop. The server's own side of each connection
closes asynchronously, on its thread, so those descriptors are identified through
``/proc/net/tcp`` and left out of the count.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import resourceloop
from resourceloop import ResourceTemplate, reap, resource_manager, stats
from resourceloop.warnings import ForcedReleaseWarning, UngracefulLoopWarning

pytest.importorskip("aiohttp")

import aiohttp
from aiohttp import web

from resourceloop.contrib.aiohttp import client_session_template
from tests._loops import is_uvloop as _is_uvloop
from tests._loops import needs_uvloop, uvloop
from tests._loops import new_uvloop as _new_uvloop
from tests._warnings import logged

pytestmark = [
    pytest.mark.skipif(
        not Path("/proc/self/fd").is_dir() or not Path("/proc/net/tcp").exists(),
        reason="counts descriptors through /proc",
    ),
    pytest.mark.usefixtures("slow_reaper"),  # these tests drive every pass with reap()
]

FACTORIES = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(_new_uvloop, id="uvloop", marks=needs_uvloop),
]


class Server:
    """An aiohttp app on 127.0.0.1 served from its own thread and loop."""

    def __init__(self) -> None:
        self.port = 0
        self.hits = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="test-server", daemon=True)

    async def _hello(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="hello")

    def _serve(self) -> None:
        async def start() -> None:
            app = web.Application()
            app.router.add_get("/", self._hello)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accepted_inodes(self) -> set[int]:
        """Socket inodes of the server's side of its connections (not its listener)."""
        inodes: set[int] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except FileNotFoundError:
                continue
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if local_port == self.port and remote_port != 0:
                    inodes.add(int(fields[9]))
        return inodes

    def client_fds(self) -> int:
        """Open descriptors of this process, not counting the server's side of connections."""
        server_side = self._accepted_inodes()
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # the directory's own descriptor, gone by now
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in server_side:
                continue
            count += 1
        return count


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # uvloop opens two descriptors on first use and keeps them for the process: open them now,
    # before any baseline is taken.
    for factory in (asyncio.new_event_loop, *([_new_uvloop] if uvloop is not None else [])):
        loop = factory()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    s = Server()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def no_unclosed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """aiohttp reports unclosed sessions both as warnings (errors here) and as log records."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            gc.collect()
    assert [r for r in caplog.records if "Unclosed" in r.getMessage()] == []


def _sessions() -> tuple[ResourceTemplate[aiohttp.ClientSession], list[object]]:
    """The contrib template, plus weak probes of every session it creates."""
    template = client_session_template(name="session")
    probes: list[object] = []
    make = template.acquire_func

    async def acquire() -> aiohttp.ClientSession:
        made = make()  # a plain function: it makes the session on the running loop
        session = await made if inspect.isawaitable(made) else made
        probes.append(weakref.ref(session))
        return session

    return (
        ResourceTemplate(
            acquire,
            template.release_func,
            name="session",
            force_release_func=template.force_release_func,
        ),
        probes,
    )


async def _get(template: ResourceTemplate[aiohttp.ClientSession], server: Server) -> None:
    session = await template.acquire()
    for _ in range(2):  # the second GET reuses the pooled connection
        async with session.get(server.url) as response:
            assert await response.text() == "hello"


def _assert_sessions_gone(probes: list[object]) -> None:
    gc.collect()
    assert probes
    assert [p for p in probes if p() is not None] == []  # type: ignore[operator]


@pytest.mark.parametrize("factory", FACTORIES)
def test_manager_path(
    server: Server, factory: Callable[[], asyncio.AbstractEventLoop], no_unclosed: None
) -> None:
    """Leaving resource_manager closes the session's sockets, while the loop still runs.

    On the default loop the descriptor is gone as soon as the manager exits; uvloop closes
    its descriptors in a later iteration, so there the count is taken after the loop closes
    (the manager has released everything by then: the close hook finds nothing to do).
    """
    sessions, probes = _sessions()
    baseline = server.client_fds()

    async def main() -> tuple[int, int]:
        async with resource_manager():
            await _get(sessions, server)
            during = server.client_fds()
        assert stats().resources_live == {}
        return during, server.client_fds()

    loop = factory()
    inside = server.client_fds()
    during, after = loop.run_until_complete(main())
    assert during > inside
    if not _is_uvloop(loop):
        assert after == inside
    loop.close()
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)
    snap = stats()
    assert (snap.graceful_releases, snap.forced_releases) == (1, 0)


@pytest.mark.parametrize("factory", FACTORIES)
def test_close_hook_path(
    server: Server, factory: Callable[[], asyncio.AbstractEventLoop], no_unclosed: None
) -> None:
    """A loop closed with sessions still open gets them closed first, on the loop."""
    sessions, probes = _sessions()
    baseline = server.client_fds()
    loop = factory()

    async def main() -> int:
        await _get(sessions, server)
        return server.client_fds()

    during = loop.run_until_complete(main())
    assert during > baseline
    loop.close()
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)
    snap = stats()
    assert (snap.graceful_releases, snap.forced_releases) == (1, 0)


def test_asyncio_run_path(server: Server, no_unclosed: None) -> None:
    """asyncio.run with an open session: sockets closed by the close hook."""
    sessions, probes = _sessions()
    baseline = server.client_fds()
    during: list[int] = []

    async def main() -> None:
        await _get(sessions, server)
        during.append(server.client_fds())

    asyncio.run(main())
    assert during[0] > baseline
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)


def test_reaper_path_on_a_closed_loop(server: Server, no_unclosed: None) -> None:
    """close_hook=False: after close, one reap() closes the sockets without the loop."""
    resourceloop.configure(close_hook=False)
    sessions, probes = _sessions()
    baseline = server.client_fds()

    async def main() -> None:
        await _get(sessions, server)

    with pytest.warns(UngracefulLoopWarning):
        asyncio.run(main())
    leaked = server.client_fds()
    assert leaked > baseline  # the pooled connection outlived its loop
    with pytest.warns(ForcedReleaseWarning, match="'session'"):
        reap()
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)
    snap = stats()
    assert (snap.forced_releases, snap.graceful_releases, snap.loops_tracked) == (1, 0, 0)


def test_abandoned_thread_path(server: Server, no_unclosed: None) -> None:
    """A thread that ends with its loop unclosed: reap() closes the session on that loop."""
    sessions, probes = _sessions()
    baseline = server.client_fds()
    loops: list[asyncio.AbstractEventLoop] = []

    def owner() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_get(sessions, server))
        loops.append(loop)

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join()
    [loop] = loops
    assert server.client_fds() > baseline
    reap()
    loop.close()  # ours to close; its session is already gone, nothing is released twice
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)
    snap = stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.loops_tracked) == (1, 0, 0)


def test_many_loops_share_nothing(server: Server, no_unclosed: None) -> None:
    """Several asyncio.run calls, each with its own session, leave no socket behind."""
    sessions, probes = _sessions()
    baseline = server.client_fds()

    async def main() -> aiohttp.ClientSession:
        await _get(sessions, server)
        return await sessions.acquire()

    seen = [id(asyncio.run(main())) for _ in range(5)]
    assert len(probes) == 5
    del seen
    assert server.client_fds() == baseline
    _assert_sessions_gone(probes)
    assert server.hits >= 10


def test_no_unclosed_log_records(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """The asyncio logger reports no unclosed session or connector on any path above."""
    sessions, _ = _sessions()
    with caplog.at_level(logging.WARNING, logger="asyncio"):

        async def main() -> None:
            await _get(sessions, server)

        asyncio.run(main())
        gc.collect()
    assert logged(caplog.records, "asyncio") == []
