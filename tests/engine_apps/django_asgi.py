"""A one-file Django project served by uvicorn for ``tests/test_engines.py``.

``/sync`` is a sync view (Django runs it through asgiref's ``sync_to_async``) whose async work
goes through ``resourceloop.sync.async_to_sync``: it runs on uvicorn's own loop, so the upstream
session is made once per worker process and reused. ``/asgiref`` does the same through
asgiref's ``async_to_sync`` with a client made once per loop by hand, the baseline. Each
returns the worker's pid and open fds; acquisitions and releases go to ``RL_LOG``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
from asgiref.sync import async_to_sync as asgiref_async_to_sync
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="resourceloop-tests",
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={},
)

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings)
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from resourceloop import ResourceManager, ResourceTemplate  # noqa: E402
from resourceloop.sync import async_to_sync  # noqa: E402

UPSTREAM = os.environ["RL_UPSTREAM"]
LOG = os.environ["RL_LOG"]


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


_by_hand: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


async def fetch_by_hand() -> list[Any]:
    loop = asyncio.get_running_loop()
    if loop not in _by_hand:
        _by_hand[loop] = aiohttp.ClientSession()
    async with _by_hand[loop].get(UPSTREAM) as response:
        await response.read()
    return [os.getpid(), len(os.listdir("/proc/self/fd"))]


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(async_to_sync(fetch)(), safe=False)


def asgiref_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(asgiref_async_to_sync(fetch_by_hand)(), safe=False)


urlpatterns = [path("sync", sync_view), path("asgiref", asgiref_view)]


def with_lifespan(app: Any) -> Any:
    """Release the worker loop's resources at ASGI lifespan shutdown (the docs' recipe).

    uvicorn stops on SIGTERM by raising the signal again with its default handler once the
    server has shut down, which kills the process before its loop closes (no close hook, no
    ``atexit``); lifespan shutdown comes before that, on the server's loop. Django does not
    speak lifespan, so this wrapper answers it and passes everything else to Django.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)  # type: ignore[no-any-return]
        manager = ResourceManager(templates=())  # acquires nothing; releases all at exit
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await manager.__aenter__()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await manager.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


application = with_lifespan(get_asgi_application())
