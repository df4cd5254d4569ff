"""A Celery app built as the docs' recipe says, for ``tests/test_engines.py``.

Each task fetches the upstream (``RL_UPSTREAM``) through a ``ClientSession`` template and
returns its worker's pid and open file descriptors; every acquisition and release is appended
to ``RL_LOG`` (one ``write`` per line, so children never interleave).
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from celery import Celery

from resourceloop import ResourceTemplate
from resourceloop.contrib.celery import async_task, install

BROKER = os.environ["RL_BROKER"]
UPSTREAM = os.environ["RL_UPSTREAM"]
LOG = os.environ["RL_LOG"]

app = Celery("celery_app", broker=BROKER, backend=BROKER)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_default_queue=os.environ["RL_QUEUE"],
)
install()


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


def open_unused() -> object:
    log("acquire unused")
    return object()


sessions = ResourceTemplate(open_session, close_session, name="upstream-session", lazy=True)
USED = [sessions]
PG_DSN = os.environ.get("RL_PG_DSN")
if PG_DSN:  # PostgreSQL too, through the contrib asyncpg pool, named for pg_stat_activity
    from resourceloop.contrib.asyncpg import pool_template

    pools = pool_template(
        PG_DSN,
        name="pg",
        lazy=True,
        min_size=1,
        max_size=1,
        server_settings={"application_name": os.environ["RL_PG_APP"]},
    )
    USED.append(pools)
# Non-lazy, never used by the tasks: templates=[sessions] must not acquire it.
unused = ResourceTemplate(open_unused, lambda _: log("release unused"), name="unused")


async def fetch() -> list[Any]:
    session = await sessions.acquire()
    async with session.get(UPSTREAM) as response:
        await response.read()
    if PG_DSN:
        assert await (await pools.acquire()).fetchval("select 1") == 1
    return [os.getpid(), len(os.listdir("/proc/self/fd"))]


@app.task  # type: ignore[untyped-decorator]
@async_task(templates=USED)
async def on_portal() -> list[Any]:
    return await fetch()


@app.task  # type: ignore[untyped-decorator]
@async_task(templates=USED, portal=False)
async def per_call() -> list[Any]:
    return await fetch()
