"""Worker threads that never close their loops, with the garbage collector on, as users run them.

A worker thread runs task after task, each ``loop = asyncio.new_event_loop();
loop.run_until_complete(body())``, and never closes a loop (Celery and Dramatiq task bodies,
``ThreadPoolExecutor`` jobs). Each body acquires a real client and uses it against a real
server on 127.0.0.1 (aiohttp's own server for aiohttp and httpx, redis-server, PostgreSQL).

What must hold, with the collector on (the default):

* while the thread lives, every loop but its newest is released, gracefully, on its own loop,
  by a reaper pass (``reap()``): it decides while the loop is still reachable (see
  ``resourceloop._reach``), before the collector could run the clients' own finalizers;
* once the thread ends, all of them are;
* no release fails, nothing is forced;
* no "unclosed" warning or log record from the client library or from asyncio's sockets; one
  ``UnclosedLoopWarning`` per thread;
* this process's descriptors and the server's own count of connections are back to baseline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate
from resourceloop.warnings import ResourceLoopWarning, UnclosedLoopWarning
from tests._warnings import Warned, record_text
from tests.aiohttp_server import Server, client_connections, count_fds, running_server
from tests.conftest import exact_refcounts
from tests.servers import wait_for
from tests.test_contrib_clients import CLIENTS, Client, _warm_up, http_server, tag

__all__ = ["http_server", "tag"]  # fixtures the clients below need, re-exported for pytest

TASKS = 60


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as server:
        yield server


def _aiohttp(request: pytest.FixtureRequest) -> Client:
    from resourceloop.contrib.aiohttp import client_session_template

    server = request.getfixturevalue("server")

    async def use(session: Any) -> None:
        async with session.get(server.url + "/") as response:
            assert response.status == 200
            await response.read()

    return Client(
        "aiohttp",
        lambda tag: client_session_template(name=f"aiohttp-{tag}"),
        use,
        lambda tag: client_connections(server),
        lambda: count_fds(server),
    )


WORKER_CLIENTS: dict[str, Callable[[pytest.FixtureRequest], Client]] = {
    "aiohttp": _aiohttp,
    "httpx": CLIENTS["httpx"],
    "redis": CLIENTS["redis"],
    "asyncpg": CLIENTS["asyncpg"],
}


@pytest.fixture(params=sorted(WORKER_CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    made = WORKER_CLIENTS[request.param](request)
    _warm_up(made)
    return made


class _Worker:
    """A thread that runs task bodies handed to it, one loop per task, never closed."""

    def __init__(self) -> None:
        self._jobs: list[Callable[[], None]] = []
        self._ready = threading.Condition()
        self._done = threading.Semaphore(0)
        self._stop = False
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="task-worker")
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._stop:
                    self._ready.wait()
                if self._stop and not self._jobs:
                    return
                job = self._jobs.pop(0)
            try:
                job()
            except BaseException as exc:  # reported by the test
                self.failures.append(exc)
            finally:
                del job
                self._done.release()

    def run(self, job: Callable[[], None]) -> None:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()
        assert self._done.acquire(timeout=120), "a task did not finish"

    def stop(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify()
        self.thread.join(timeout=120)


def _task(template: ResourceTemplate[Any], use: Callable[[Any], Any]) -> Callable[[], None]:
    def body() -> None:
        async def work() -> None:
            await use(await template.acquire())

        loop = asyncio.new_event_loop()  # never closed, as the task bodies users write
        loop.run_until_complete(work())

    return body


@pytest.fixture
def witnessed(caplog: pytest.LogCaptureFixture) -> Iterator[list[Warned]]:
    """Every warning, and every warning or error a client library or asyncio logs."""
    with caplog.at_level(logging.WARNING), record_text() as caught:
        yield caught
        for _ in range(3):
            gc.collect()
    logged = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if not r.name.startswith("resource")
    ]
    assert logged == []


def _foreign(caught: list[Warned]) -> list[str]:
    return [str(w.message) for w in caught if not issubclass(w.category, ResourceLoopWarning)]


@exact_refcounts
def test_loops_left_unclosed_on_a_live_worker_thread(
    client: Client, tag: str, witnessed: list[Warned]
) -> None:
    """60 never-closed loops on a thread that lives on: released while it lives, then all."""
    assert gc.isenabled()
    template = client.template(tag)
    fds = client.fds()
    worker = _Worker()
    try:
        for _ in range(TASKS):
            worker.run(_task(template, client.use))
        assert worker.failures == []
        resourceloop.reap()  # the thread lives on, and has moved on from every loop but one
        if resourceloop.stats().graceful_releases < TASKS - 1:
            # A loop that garbage still refers to (a client's exception cycle the young
            # collection of reap() missed, seen under load on 3.10) waits for the collector.
            gc.collect()
            resourceloop.reap()
        assert worker.thread.is_alive()
        snap = resourceloop.stats()
        assert snap.acquisitions == TASKS
        assert snap.graceful_releases >= TASKS - 1
        assert (snap.forced_releases, snap.release_failures) == (0, 0)
        assert sum(snap.resources_live.values()) == TASKS - snap.graceful_releases
    finally:
        worker.stop()
    resourceloop.reap()  # its thread ended: the newest loop too
    snap = resourceloop.stats()
    assert (snap.graceful_releases, snap.forced_releases, snap.release_failures) == (TASKS, 0, 0)
    assert snap.resources_live == {}
    assert snap.loops_tracked == 0
    for _ in range(3):
        gc.collect()
    assert client.fds() == fds
    wait_for(lambda: client.connections(tag), 0, f"{client.kind} connections left on the server")
    assert _foreign(witnessed) == []
    assert [w.category for w in witnessed] == [UnclosedLoopWarning]  # once for the thread


def test_a_loop_the_program_keeps_is_left_alone(server: Server) -> None:
    """A loop its thread left for a newer one, but that the program still refers to, is kept.

    Its owner may run it again: its resources stay (and the next acquisition finds them), and
    it is neither released nor closed until it is closed or dropped.
    """
    from resourceloop.contrib.aiohttp import client_session_template

    template = client_session_template(name="kept")
    kept: list[asyncio.AbstractEventLoop] = []

    async def fetch() -> Any:
        session = await template.acquire()
        async with session.get(server.url + "/") as response:
            await response.read()
        return session

    def body() -> None:
        loop = asyncio.new_event_loop()
        kept.append(loop)
        loop.run_until_complete(fetch())

    worker = _Worker()
    try:
        worker.run(body)
        worker.run(body)
        for _ in range(3):
            resourceloop.reap()
        snap = resourceloop.stats()
        assert (snap.graceful_releases, snap.forced_releases) == (0, 0)
        assert not kept[0].is_closed()
        first: list[Any] = []

        def again() -> None:
            first.append(kept[0].run_until_complete(fetch()))

        worker.run(again)
        assert resourceloop.stats().acquisitions == 2  # the same session, found again

        def close_them() -> None:
            for loop in kept:
                loop.close()

        worker.run(close_them)
        assert resourceloop.stats().graceful_releases == 2
    finally:
        worker.stop()


@pytest.mark.engine
@exact_refcounts
def test_celery_solo_worker(server: Server) -> None:
    """An in-process Celery worker (solo pool, memory broker), collector on: nothing left open."""
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker

    from resourceloop.contrib.aiohttp import client_session_template

    template = client_session_template(name="celery-session", lazy=True)  # Celery keeps it
    app = celery.Celery("resourceloop-tests", broker="memory://", backend="cache+memory://")

    @app.task  # type: ignore[untyped-decorator, misc, unused-ignore]
    def fetch(url: str) -> int:
        async def get() -> int:
            session = await template.acquire()
            async with session.get(url) as response:
                await response.read()
                return int(response.status)

        loop = asyncio.new_event_loop()
        return loop.run_until_complete(get())

    baseline = count_fds(server)
    with (
        record_text() as caught,
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30),
    ):
        results = [fetch.delay(server.url + "/") for _ in range(TASKS)]
        assert [r.get(timeout=60) for r in results] == [200] * TASKS
        resourceloop.reap()
        snap = resourceloop.stats()
        assert snap.acquisitions == TASKS
        assert snap.graceful_releases >= TASKS - 1
        assert client_connections(server) <= TASKS - snap.graceful_releases
    resourceloop.reap()
    gc.collect()
    snap = resourceloop.stats()
    assert (snap.forced_releases, snap.release_failures) == (0, 0)
    assert snap.acquisitions == snap.graceful_releases + sum(snap.resources_live.values())
    assert count_fds(server) <= baseline + 4 * sum(snap.resources_live.values())
    assert _foreign(caught) == []


@pytest.mark.engine
@exact_refcounts
def test_dramatiq_worker_thread(server: Server) -> None:
    """A Dramatiq worker thread (StubBroker), collector on: nothing left open while it lives."""
    dramatiq = pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker

    from resourceloop.contrib.aiohttp import client_session_template

    template = client_session_template(name="dramatiq-session", lazy=True)  # the broker keeps it
    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    statuses: list[int] = []

    async def get(url: str) -> int:
        session = await template.acquire()
        async with session.get(url) as response:
            await response.read()
            return int(response.status)

    @dramatiq.actor(broker=broker)  # type: ignore[untyped-decorator, misc, unused-ignore]
    def fetch(url: str) -> None:
        loop = asyncio.new_event_loop()
        statuses.append(loop.run_until_complete(get(url)))

    baseline = count_fds(server)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        with record_text() as caught:
            for _ in range(TASKS):
                fetch.send(server.url + "/")
            broker.join(fetch.queue_name, timeout=60_000)
            worker.join()
            assert statuses == [200] * TASKS
            threads = [t for t in worker.workers if t.is_alive()]
            assert threads, "the worker thread lives on"
            resourceloop.reap()
            snap = resourceloop.stats()
            assert snap.graceful_releases >= TASKS - 1
            assert (snap.forced_releases, snap.release_failures) == (0, 0)
            live = sum(snap.resources_live.values())
            assert client_connections(server) <= live
            assert count_fds(server) <= baseline + 4 * live
        assert _foreign(caught) == []
    finally:
        worker.stop()
        broker.close()
    resourceloop.reap()
    snap = resourceloop.stats()
    assert snap.acquisitions == TASKS
    assert snap.acquisitions == snap.graceful_releases + sum(snap.resources_live.values())
