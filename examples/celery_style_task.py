"""A Celery-style task: ``@async_to_sync`` over ``@resource_manager.as_decorator``.

Task queues such as Celery or Dramatiq call plain functions from worker threads. The seed
page's decorator form fits them: ``async_to_sync`` gives each call its own event loop, and
``resource_manager.as_decorator`` acquires the loop's resources before the task body and
releases them, on the loop, right after it. The tiny ``Worker`` below stands in for Celery (no
dependency needed): ``@worker.task`` registers a function, ``.delay()`` runs it on the worker's
thread pool and returns a future, as ``apply_async`` would return an ``AsyncResult``.

Run it with ``python examples/celery_style_task.py`` (it starts the demo server on 127.0.0.1).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, ParamSpec, TypeVar

import resourceloop
from resourceloop import resource_manager
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.demo.server import DemoServer, expected_average_duration_millis
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync

P = ParamSpec("P")
R = TypeVar("R")

http = client_session_template(name="task-http")
API_URL = {"value": "http://127.0.0.1:0"}  # set in main()


class Task(Generic[P, R]):
    """What ``@worker.task`` returns: call it directly, or ``.delay()`` it on the pool."""

    def __init__(self, worker: Worker, func: Callable[P, R]) -> None:
        self._worker = worker
        self._func = func
        self.name = func.__name__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._func(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return self._worker.pool.submit(self._func, *args, **kwargs)


class Worker:
    """A stand-in for a Celery worker: a thread pool that runs registered tasks."""

    def __init__(self, concurrency: int) -> None:
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="worker")

    def task(self, func: Callable[P, R]) -> Task[P, R]:
        return Task(self, func)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)


worker = Worker(concurrency=4)


async def _get_json(path: str) -> Any:
    session = await http.acquire()  # acquired by the manager already: no creation here
    async with session.get(API_URL["value"] + path) as response:
        response.raise_for_status()
        return await response.json()


@worker.task
@async_to_sync
@resource_manager.as_decorator
async def average_match_duration(summoner_name: str, matches: int = 5) -> float:
    summoner = await _get_json(f"/lol/summoner/v4/summoners/by-name/{summoner_name}")
    ids = await _get_json(f"/lol/match/v5/matches/by-puuid/{summoner['puuid']}/ids?count={matches}")
    async with Queue() as queue:
        for match_id in ids:
            await queue.put(_get_json(f"/lol/match/v5/matches/{match_id}"))
        found = await queue.join()
    durations: list[int] = [m["info"]["gameDuration"] * 1000 for m in found]
    return statistics.mean(durations or [0])


def main() -> int:
    names = [f"summoner-{i}" for i in range(10)]
    with DemoServer(latency=0.001) as server:
        API_URL["value"] = server.url
        results = [average_match_duration.delay(name) for name in names]
        averages = [result.result(timeout=60) for result in results]
        worker.shutdown()
    wrong = sum(
        a != expected_average_duration_millis(n) for n, a in zip(names, averages, strict=True)
    )
    stats = resourceloop.stats()
    print(f"{len(names)} tasks run by the worker pool, {wrong} wrong answers")
    print(
        f"sessions created: {stats.acquisitions}, released gracefully by the manager: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}"
    )
    clean = (
        not wrong
        and stats.acquisitions == stats.graceful_releases == len(names)
        and not resourceloop.live_resources()
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
