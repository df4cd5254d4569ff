"""A Dramatiq app for ``tests/test_engines.py``: an actor whose async body runs on the portal.

The module is imported in each worker process (after the fork): the portal's first start
there registers the end-of-process finalizer (``multiprocessing.util.Finalize``).
"""

from __future__ import annotations

import os

import aiohttp
import dramatiq
from dramatiq.brokers.redis import RedisBroker

from resourceloop import ResourceTemplate
from resourceloop.sync import async_to_sync

UPSTREAM = os.environ["RL_UPSTREAM"]
LOG = os.environ["RL_LOG"]

dramatiq.set_broker(RedisBroker(url=os.environ["RL_BROKER"]))  # type: ignore[no-untyped-call]


def log(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def open_session() -> aiohttp.ClientSession:
    log("acquire session")
    return aiohttp.ClientSession()


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    log("release session")


sessions = ResourceTemplate(open_session, close_session, name="upstream-session", lazy=True)


@async_to_sync(portal=True)
async def fetch() -> None:
    session = await sessions.acquire()
    async with session.get(UPSTREAM) as response:
        await response.read()
    log("done task")


@dramatiq.actor(queue_name=os.environ["RL_QUEUE"])
def on_portal() -> None:
    fetch()
