"""Worker threads that never close their loops, with real task runners and a real server.

Celery (an in-process worker, solo pool, memory broker) and Dramatiq (a ``StubBroker`` and an
in-process ``Worker``) run task bodies that do what many do:
``loop = asyncio.new_event_loop(); loop.run_until_complete(...)`` and never close the loop. Each
task fetches from a real aiohttp server on 127.0.0.1 with the session of
``resourceloop.contrib.aiohttp``. While the worker thread is still alive, ``reap()`` must bring
this process's sockets and the server's view of its connections back to the baseline, and
resourceloop must not keep the dropped loops alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import Callable, Iterator

import aiohttp
import pytest

import resourceloop
from resourceloop import ResourceTemplate
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.warnings import UnclosedLoopWarning

from .aiohttp_server import (
    Server,
    _server_side_inodes,
    client_connections,
    count_fds,
    running_server,
)

TASKS = 40

pytestmark = [
    # asyncio's own "unclosed event loop"/"unclosed <socket>" warnings: the task bodies leave
    # their loops unclosed on purpose, and asyncio says so when they are collected.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as server:
        yield server


def _server_connections(server: Server) -> int:
    """Connections the server still holds open (its accepted sockets, not the listener)."""
    return max(len(_server_side_inodes(server.port)) - 1, 0)


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Wait for a condition another thread makes true (the server closing its side)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _task_body(template: ResourceTemplate[aiohttp.ClientSession], url: str) -> int:
    """What a task runner's task does: a new loop, used once, never closed."""

    async def fetch() -> int:
        session = await template.acquire()
        async with session.get(url) as response:
            await response.read()
            return response.status

    loop = asyncio.new_event_loop()
    status: int = loop.run_until_complete(fetch())
    return status


def _check_released_while_alive(server: Server, baseline: int, alive: Callable[[], bool]) -> None:
    # Before: every task left its loop, its session and its connection behind (the automatic
    # collector is off for the run: the worst case, no collection has found them yet).
    assert client_connections(server) >= TASKS - 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", UnclosedLoopWarning)
        resourceloop.reap()  # runs the collector: the worker moved on from its older loops
        gc.collect()
        resourceloop.reap()
    assert alive(), "the worker thread must still be alive for this check"
    live = sum(resourceloop.stats().resources_live.values())
    assert live <= 1  # at most the worker's newest loop: it may run it again
    assert client_connections(server) <= live
    assert count_fds(server) <= baseline + 4 * live  # a session: socket, selector, self-pipe
    assert _until(lambda: _server_connections(server) <= live)
    assert [w.category for w in caught] == [UnclosedLoopWarning]  # once for the thread


def test_celery_solo_worker(server: Server) -> None:
    """An in-process Celery worker (solo pool, memory broker) leaves nothing open."""
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker

    template = client_session_template(name="celery-session", lazy=True)  # Celery keeps it
    app = celery.Celery("resourceloop-tests", broker="memory://", backend="cache+memory://")

    @app.task  # type: ignore[untyped-decorator, misc, unused-ignore]
    def fetch(url: str) -> int:
        return _task_body(template, url)

    baseline = count_fds(server)
    with (
        _collector_off(),
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker,
    ):
        results = [fetch.delay(server.url + "/") for _ in range(TASKS)]
        assert [r.get(timeout=60) for r in results] == [200] * TASKS
        assert resourceloop.stats().acquisitions == TASKS
        _check_released_while_alive(server, baseline, lambda: worker is not None)
    resourceloop.reap()
    snap = resourceloop.stats()
    assert snap.acquisitions == snap.graceful_releases + snap.forced_releases
    assert sum(snap.resources_live.values()) <= 1


def test_dramatiq_worker_thread(server: Server) -> None:
    """A Dramatiq worker thread (StubBroker) leaves nothing open while it lives."""
    dramatiq = pytest.importorskip("dramatiq")
    from dramatiq.brokers.stub import StubBroker

    template = client_session_template(name="dramatiq-session", lazy=True)  # the broker keeps it
    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    statuses: list[int] = []

    @dramatiq.actor(broker=broker)  # type: ignore[untyped-decorator, misc, unused-ignore]
    def fetch(url: str) -> None:
        statuses.append(_task_body(template, url))

    baseline = count_fds(server)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        gc.disable()
        for _ in range(TASKS):
            fetch.send(server.url + "/")
        broker.join(fetch.queue_name, timeout=60_000)
        worker.join()
        assert statuses == [200] * TASKS
        threads = [t for t in worker.workers if t.is_alive()]
        assert threads, "the worker thread lives on"
        _check_released_while_alive(server, baseline, lambda: all(t.is_alive() for t in threads))
    finally:
        gc.enable()
        worker.stop()
        broker.close()
    resourceloop.reap()
    snap = resourceloop.stats()
    assert snap.acquisitions == TASKS
    assert snap.acquisitions == snap.graceful_releases + snap.forced_releases + sum(
        snap.resources_live.values()
    )
