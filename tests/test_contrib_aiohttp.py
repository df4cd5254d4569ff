"""Tests for `resourceloop.contrib.aiohttp`: real sessions, a real server, real sockets.

Every path that ends a loop must give the sockets back: the file descriptors of this process
(minus the test server's own sockets, which it closes in its own thread) return to their
baseline, and neither aiohttp nor asyncio warns or logs an error.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="the aiohttp extra is not installed")

import resourceloop  # noqa: E402
from resourceloop import ResourceTemplate, resource_manager  # noqa: E402
from resourceloop.contrib.aiohttp import (  # noqa: E402
    client_session_template,
    close_session_now,
)
from resourceloop.warnings import ForcedReleaseWarning, UngracefulLoopWarning  # noqa: E402
from tests._env import child_env  # noqa: E402
from tests._warnings import Warned, record_text  # noqa: E402
from tests.aiohttp_server import (  # noqa: E402
    Server,
    client_connections,
    count_fds,
    running_server,
    self_signed_tls,
)

Session = Any  # aiohttp.ClientSession, imported lazily through importorskip


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ssl.SSLContext]]:
    """An HTTPS server with a throwaway self-signed certificate, and a context trusting it."""
    server_context, client_context = self_signed_tls(tmp_path_factory.mktemp("tls"))
    with running_server(server_context) as running:
        yield running, client_context


@contextmanager
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[list[Warned]]:
    """Record every warning (from any thread) and fail on an asyncio/aiohttp error log.

    Warnings are kept as text: a recorded "unclosed event loop" would keep its loop alive.
    """
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with record_text() as caught:
            yield caught
            for _ in range(3):
                gc.collect()
        errors = [r for r in caplog.records if r.name == "asyncio"]
        assert errors == [], [r.getMessage() for r in errors]


def foreign(caught: list[Warned]) -> list[str]:
    """Warnings that are not resourceloop's own: aiohttp's or asyncio's, say."""
    return [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not issubclass(w.category, resourceloop.warnings.ResourceLoopWarning)
    ]


async def fetch(template: ResourceTemplate[Session], server: Server, times: int = 3) -> Session:
    """Make ``times`` requests through this loop's session (several connections at once)."""
    session = await template.acquire()

    async def one() -> None:
        async with session.get(server.url + "/") as response:
            assert (await response.json()) == {"hello": "world"}

    await asyncio.gather(*(one() for _ in range(times)))
    assert client_connections(server) >= 1
    return session


def test_import_does_not_import_aiohttp() -> None:
    """`import resourceloop` (and its queue and sync helpers) leaves aiohttp unimported."""
    code = (
        "import sys, resourceloop, resourceloop.queue, resourceloop.sync, resourceloop.contrib\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env())


def test_template_shape() -> None:
    """The factory returns a named template whose force release closes sessions."""
    template = client_session_template(name="riot", lazy=True, headers={"X-Riot-Token": "t"})
    assert isinstance(template, ResourceTemplate)
    assert template.name == "riot"
    assert template.lazy is True
    assert template.force_release_func is close_session_now
    assert client_session_template().name == "aiohttp.ClientSession"


@pytest.mark.parametrize("bound", ["connector", "loop"])
def test_template_rejects_loop_bound_arguments(bound: str) -> None:
    """A connector or loop would be shared by every loop's session: refused at once."""
    kwargs: dict[str, Any] = {bound: object()}
    with pytest.raises(TypeError, match="connector_factory"):
        client_session_template(**kwargs)


def test_template_rejects_non_callable_connector_factory() -> None:
    """``connector_factory`` must be callable."""
    with pytest.raises(TypeError, match="connector_factory"):
        client_session_template(connector_factory=42)  # type: ignore[arg-type]


def test_session_kwargs_and_connector_factory_apply(server: Server) -> None:
    """Keyword arguments reach the session; each loop gets a connector from the factory."""
    made: list[Any] = []

    def connector() -> Any:
        made.append(aiohttp.TCPConnector(limit=3))
        return made[-1]

    template = client_session_template(
        connector_factory=connector, headers={"X-Test": "yes"}, raise_for_status=True
    )

    async def main() -> Session:
        async with resource_manager():
            session = await template.acquire()
            assert session.headers["X-Test"] == "yes"
            assert session.connector is made[-1]
            assert session.connector.limit == 3
            async with session.get(server.url + "/") as response:
                assert response.status == 200
            return session

    first = asyncio.run(main())
    second = asyncio.run(main())
    assert first is not second
    assert first.closed
    assert second.closed
    assert len(made) == 2


def test_manager_releases_gracefully(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Leaving `resource_manager()` closes the session on its loop: fds back, no warning."""
    template = client_session_template()
    baseline = count_fds(server)

    async def main() -> Session:
        async with resource_manager():
            session = await fetch(template, server)
        assert session.closed
        assert client_connections(server) == 0
        return session

    with quiet(caplog) as caught:
        session = asyncio.run(main())
    assert session.closed
    assert caught == []
    assert count_fds(server) == baseline
    # The manager acquires every live non-lazy template: ours, and any other one alive.
    eager = sum(1 for t in resourceloop.resource_templates if not t.lazy)
    stats = resourceloop.stats()
    assert (stats.acquisitions, stats.graceful_releases, stats.forced_releases) == (eager, eager, 0)


def test_close_hook_releases_gracefully(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Unmanaged code under `asyncio.run`: the close hook closes the session before the loop."""
    template = client_session_template()
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        session = asyncio.run(fetch(template, server))
        assert session.closed
        assert client_connections(server) == 0
    assert caught == []
    assert count_fds(server) == baseline
    stats = resourceloop.stats()
    assert (stats.graceful_releases, stats.forced_releases, stats.loops_tracked) == (1, 0, 0)


def test_reaper_closes_sockets_of_closed_loop(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Close hook disabled, loop closed: `reap()` closes the sockets for real, quietly."""
    resourceloop.configure(close_hook=False)
    template = client_session_template()
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(fetch(template, server))
        loop.close()
        assert client_connections(server) >= 1  # nothing released them yet
        resourceloop.reap()
        assert session.closed
        assert client_connections(server) == 0
        del loop
    assert count_fds(server) == baseline
    assert foreign(caught) == []
    categories = [w.category for w in caught]
    assert categories == [UngracefulLoopWarning, ForcedReleaseWarning]
    assert resourceloop.stats().forced_releases == 1


def test_abandoned_loop_is_released_gracefully(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread that ends without closing its loop: `reap()` closes the session on that loop."""
    template = client_session_template()
    box: dict[str, Any] = {}

    def abandon() -> None:
        loop = asyncio.new_event_loop()
        box["with_loop"] = count_fds(server)  # the loop's own selector and self-pipe
        box["session"] = loop.run_until_complete(fetch(template, server))
        box["loop"] = loop

    with quiet(caplog) as caught:
        worker = threading.Thread(target=abandon)
        worker.start()
        worker.join()
        assert client_connections(server) >= 1
        resourceloop.reap()
        assert box["session"].closed
        assert client_connections(server) == 0
        assert count_fds(server) == box["with_loop"]
        box.pop("loop").close()  # the test owns the loop; the reaper never closes it
    assert caught == []
    stats = resourceloop.stats()
    assert (stats.graceful_releases, stats.forced_releases, stats.loops_tracked) == (1, 0, 0)


def test_dropped_loop_is_collected_after_reap(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop dropped unclosed by a finished thread is not pinned by its tracked session.

    The session lives on the loop, so loop and session become garbage together; the store's
    finalizer hands the session to the reaper, which closes it gracefully on the loop, closes
    the loop, and lets both go. asyncio's own "unclosed event loop" warning about the
    never-closed loop, and ours once for the thread, are the only warnings.
    """
    template = client_session_template()
    probe: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    sessions: list[weakref.ref[Session]] = []
    baseline = count_fds(server)

    def drop() -> None:
        loop = asyncio.new_event_loop()
        sessions.append(weakref.ref(loop.run_until_complete(fetch(template, server))))
        probe.append(weakref.ref(loop))

    with quiet(caplog) as caught:
        worker = threading.Thread(target=drop)
        worker.start()
        worker.join()
        del worker
        resourceloop.reap()  # runs the collector: the loop has moved on to nothing
        for _ in range(3):
            gc.collect()
        assert client_connections(server) == 0
        assert probe[0]() is None
        assert sessions[0]() is None
    assert count_fds(server) == baseline
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.resources_live) == (1, 0, {})
    assert all(issubclass(w.category, ResourceWarning) for w in caught), caught
    assert all(
        "unclosed event loop" in str(w.message) or "left unclosed" in str(w.message) for w in caught
    ), [str(w.message) for w in caught]


def test_close_session_now_on_closed_loop(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """The force release itself: sockets of a closed loop closed, session closed, twice OK."""
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        loop = asyncio.new_event_loop()

        async def use() -> Session:
            session = aiohttp.ClientSession()
            async with session.get(server.url + "/") as response:
                await response.read()
            return session

        session = loop.run_until_complete(use())
        loop.close()
        close_session_now(session)
        assert session.closed
        assert client_connections(server) == 0
        close_session_now(session)  # idempotent
        del session, loop
    assert caught == []
    assert count_fds(server) == baseline


def test_close_session_now_on_idle_open_loop(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """An open loop nobody runs: the force release lets it finish closing the transports."""
    with quiet(caplog) as caught:
        loop = asyncio.new_event_loop()
        baseline = count_fds(server)

        async def use() -> Session:
            session = aiohttp.ClientSession()
            async with session.get(server.url + "/") as response:
                await response.read()
            return session

        session = loop.run_until_complete(use())
        close_session_now(session)
        assert session.closed
        assert client_connections(server) == 0
        assert count_fds(server) == baseline
        loop.close()
        del session, loop
    assert caught == []


def test_close_session_now_from_its_running_loop(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Called on the session's own running loop (a timed-out release): closes without await."""

    async def main() -> None:
        session = aiohttp.ClientSession()
        async with session.get(server.url + "/") as response:
            await response.read()
        close_session_now(session)
        assert session.closed
        for _ in range(2):  # the transports finish closing on the next loop iterations
            await asyncio.sleep(0)
        assert client_connections(server) == 0

    baseline = count_fds(server)
    with quiet(caplog) as caught:
        asyncio.run(main())
    assert caught == []
    assert count_fds(server) == baseline


def test_close_session_now_from_another_thread(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Called while the loop runs in another thread: the close is done on that thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:

        async def use() -> Session:
            session = aiohttp.ClientSession()
            async with session.get(server.url + "/") as response:
                await response.read()
            return session

        with quiet(caplog) as caught:
            session = asyncio.run_coroutine_threadsafe(use(), loop).result(30)
            close_session_now(session)
            # Two round trips through the loop: its _close ran, then the transports closed.
            for _ in range(2):
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(30)
            assert session.closed
            assert client_connections(server) == 0
            del session
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
    assert caught == []


def test_close_session_now_leaves_shared_connector_open(server: Server) -> None:
    """A session that does not own its connector is detached; the connector stays open."""

    async def main() -> None:
        connector = aiohttp.TCPConnector()
        session = aiohttp.ClientSession(connector=connector, connector_owner=False)
        async with session.get(server.url + "/") as response:
            await response.read()
        close_session_now(session)
        assert session.closed
        assert not connector.closed
        await connector.close()

    asyncio.run(main())


def test_forced_release_after_release_timeout(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A graceful release that hangs is abandoned; the force release still frees the sockets."""
    resourceloop.configure(release_timeout=0.05)
    hang = asyncio.Event()  # never set

    async def open_session() -> Session:
        return aiohttp.ClientSession()

    async def stuck_close(session: Session) -> None:
        await hang.wait()

    template: ResourceTemplate[Session] = ResourceTemplate(
        open_session, stuck_close, force_release_func=close_session_now, name="stuck"
    )
    baseline = count_fds(server)
    with quiet(caplog) as caught:

        async def main() -> None:
            async with resource_manager():
                session = await template.acquire()
                async with session.get(server.url + "/") as response:
                    await response.read()
            assert session.closed
            for _ in range(2):
                await asyncio.sleep(0)
            assert client_connections(server) == 0

        asyncio.run(main())
    assert foreign(caught) == []
    assert [w.category.__name__ for w in caught] == ["ReleaseTimeoutWarning"]
    assert count_fds(server) == baseline


def test_tls_close_hook_releases_gracefully(
    tls: tuple[Server, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    """HTTPS sessions too: closed on their loop by the close hook, fds back, no warning."""
    server, context = tls
    template = client_session_template(connector_factory=lambda: aiohttp.TCPConnector(ssl=context))
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        session = asyncio.run(fetch(template, server))
        assert session.closed
        assert client_connections(server) == 0
    assert caught == []
    assert count_fds(server) == baseline
    assert resourceloop.stats().graceful_releases == 1


def test_tls_reaper_closes_sockets_of_closed_loop(
    tls: tuple[Server, ssl.SSLContext], caplog: pytest.LogCaptureFixture
) -> None:
    """HTTPS on a closed loop: the SSL transports are unwrapped and their sockets closed."""
    server, context = tls
    resourceloop.configure(close_hook=False)
    template = client_session_template(connector_factory=lambda: aiohttp.TCPConnector(ssl=context))
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(fetch(template, server))
        loop.close()
        assert client_connections(server) >= 1
        resourceloop.reap()
        assert session.closed
        assert client_connections(server) == 0
        del loop, session
    assert count_fds(server) == baseline
    assert foreign(caught) == []
    assert [w.category for w in caught] == [UngracefulLoopWarning, ForcedReleaseWarning]


def test_uvloop_closed_loop_forced_release(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """On a closed uvloop loop the force release is quiet and the session ends up closed.

    uvloop closes its transports itself in ``loop.close()`` (warning "unclosed resource" there,
    which only a graceful release avoids); the force release must then neither raise nor warn.
    """
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    uvloop.run(asyncio.sleep(0))  # uvloop's first loop opens a process-wide pipe: not ours
    resourceloop.configure(close_hook=False)
    template = client_session_template()
    baseline = count_fds(server)
    with quiet(caplog) as caught:
        loop = uvloop.new_event_loop()
        session = loop.run_until_complete(fetch(template, server))
        loop.close()
        closing = foreign(caught)
        resourceloop.reap()
        assert session.closed
        assert client_connections(server) == 0
        del loop, session
    assert count_fds(server) == baseline
    assert all(message.startswith("ResourceWarning: unclosed resource") for message in closing)
    assert foreign(caught) == closing  # nothing more after the loop closed
    assert [w.category for w in caught if w.category is not ResourceWarning] == [
        UngracefulLoopWarning,
        ForcedReleaseWarning,
    ]
    assert resourceloop.stats().forced_releases == 1
