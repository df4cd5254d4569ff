"""A Flask app served by gunicorn for ``tests/test_engines.py``: sync views, async work.

``/portal`` runs its async body on the worker process's portal (``async_to_sync(portal=True)``,
the upstream session reused by the next requests of that worker); ``/per-call`` on a fresh loop
per request. Each returns the worker's pid and open fds; acquisitions and releases of the
session are appended to ``RL_LOG``.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from flask import Flask, jsonify

from resourceloop import ResourceTemplate
from resourceloop.sync import async_to_sync

UPSTREAM = os.environ["RL_UPSTREAM"]
LOG = os.environ["RL_LOG"]

app = Flask(__name__)


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


async def fetch() -> list[Any]:
    session = await sessions.acquire()
    async with session.get(UPSTREAM) as response:
        await response.read()
    return [os.getpid(), len(os.listdir("/proc/self/fd"))]


on_portal = async_to_sync(fetch, portal=True)
per_call = async_to_sync(fetch)


@app.get("/portal")
def portal_view() -> Any:
    return jsonify(on_portal())


@app.get("/per-call")
def per_call_view() -> Any:
    return jsonify(per_call())
