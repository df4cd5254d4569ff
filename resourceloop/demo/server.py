"""A small Riot-like JSON API on 127.0.0.1, served from its own thread and event loop.

Endpoints (shapes follow Riot's summoner-v4 and match-v5 APIs, trimmed down):

* ``GET /lol/summoner/v4/summoners/by-name/{name}``: ``{"id", "puuid", "name", "summonerLevel"}``
* ``GET /lol/match/v5/matches/by-puuid/{puuid}/ids?count=N``: a list of match ids
* ``GET /lol/match/v5/matches/{match_id}``: ``{"metadata": {...}, "info": {"gameDuration", ...}}``
  with ``gameDuration`` in seconds, as match-v5 has it.

The data is derived from the names and ids by hashing, so it is the same on every run and
:func:`expected_average_duration_millis` can check a client's answer. Each response waits
``latency`` seconds first, like a real API would.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import ssl
import statistics
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

from aiohttp import web

__all__ = [
    "MATCHES_PER_HISTORY",
    "DemoServer",
    "expected_average_duration_millis",
    "fake_match",
    "fake_match_ids",
    "fake_summoner",
]

#: How many match ids a history holds when the request does not say.
MATCHES_PER_HISTORY: Final = 20


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def fake_summoner(name: str) -> dict[str, Any]:
    """The summoner called ``name`` (every name exists)."""
    digest = _digest("summoner", name)
    return {
        "id": digest[:48],
        "puuid": digest[:64] + _digest("puuid", name)[:14],
        "name": name,
        "summonerLevel": 30 + int(digest[:4], 16) % 500,
    }


def fake_match_ids(puuid: str, count: int = MATCHES_PER_HISTORY) -> list[str]:
    """The ``count`` most recent match ids of ``puuid``."""
    return [f"EUW1_{int(_digest('match', puuid, str(i))[:12], 16) % 10**10}" for i in range(count)]


def fake_match(match_id: str) -> dict[str, Any]:
    """The match ``match_id``: between 15 and 45 minutes long."""
    digest = _digest("duration", match_id)
    duration = 900 + int(digest[:8], 16) % 1800
    return {
        "metadata": {"matchId": match_id, "dataVersion": "2"},
        "info": {
            "gameId": int(match_id.rsplit("_", maxsplit=1)[-1]),
            "gameMode": "CLASSIC",
            "queueId": 420,
            "gameDuration": duration,
        },
    }


def expected_average_duration_millis(name: str, matches: int = 5) -> float:
    """What the seed's example must compute for ``name`` over its first ``matches`` matches."""
    ids = fake_match_ids(fake_summoner(name)["puuid"])[:matches]
    durations: list[int] = [fake_match(i)["info"]["gameDuration"] * 1000 for i in ids]
    return float(statistics.mean(durations or [0]))


class DemoServer:
    """The fake API on ``127.0.0.1`` (an ephemeral port), running in a daemon thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with DemoServer(latency=0.005) as server:
            print(server.url)  # http://127.0.0.1:<port>

    Args:
        latency: Seconds each response waits before it is sent.
        ssl_context: Serve HTTPS with this context (``url`` then starts with ``https``).

    It counts the TCP connections it accepted (:attr:`connections`), so a client's connection
    reuse can be seen from the server's side.

    ``start``/``stop`` may be called from any thread that is not the server's own.
    """

    def __init__(self, latency: float = 0.005, ssl_context: ssl.SSLContext | None = None) -> None:
        if latency < 0:
            raise ValueError(f"latency must be 0 or more seconds, got {latency!r}")
        self.latency = latency
        self.ssl_context = ssl_context
        self.requests = 0  # written only on the server's loop
        self.peers: set[Any] = set()  # client addresses served; written only on the server's loop
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo server is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` with TLS), without a trailing slash."""
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (distinct client addresses that sent a request)."""
        return len(self.peers)

    @property
    def open_connections(self) -> int:
        """TCP connections open right now (a snapshot; readable from any thread)."""
        runner = self._runner
        server = runner.server if runner is not None else None
        return 0 if server is None else len(server.connections)

    def start(self) -> DemoServer:
        """Start serving and return once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the demo server is already started")
        self._thread = threading.Thread(target=self._serve, name="demo-server", daemon=True)
        self._thread.start()
        try:
            self._ready.wait()
        except BaseException:  # Ctrl-C while starting: it binds in milliseconds, then stop it
            self._ready.wait()
            self.stop()
            raise
        if self._error is not None:
            raise RuntimeError("the demo server could not start") from self._error
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the server's loop. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        try:
            loop.call_soon_threadsafe(stopping.set)
        except RuntimeError:  # its loop is already closed
            pass
        thread.join()
        self._thread = None
        self._port = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the server's own thread ----------------------------------------------------------------

    def _serve(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # Ctrl-C is the main thread's to handle
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(), which is waiting
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._count_connection])
        app.router.add_get("/lol/summoner/v4/summoners/by-name/{name}", self._summoner)
        app.router.add_get("/lol/match/v5/matches/by-puuid/{puuid}/ids", self._match_ids)
        app.router.add_get("/lol/match/v5/matches/{match_id}", self._match)
        # A short shutdown_timeout: requests still waiting out a long --latency when Ctrl-C stops
        # the demo are cut off rather than waited for (a normal run ends with none in flight).
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
            await site.start()
            self._port = runner.addresses[0][1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    @web.middleware
    async def _count_connection(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    async def _respond(self, body: object) -> web.Response:
        self.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response(body)

    async def _summoner(self, request: web.Request) -> web.Response:
        return await self._respond(fake_summoner(request.match_info["name"]))

    async def _match_ids(self, request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", MATCHES_PER_HISTORY))
        except ValueError:
            raise web.HTTPBadRequest(text="count must be an integer") from None
        if not 0 <= count <= 100:
            raise web.HTTPBadRequest(text="count must be between 0 and 100")
        return await self._respond(fake_match_ids(request.match_info["puuid"], count))

    async def _match(self, request: web.Request) -> web.Response:
        match_id = request.match_info["match_id"]
        if not match_id.startswith("EUW1_") or not match_id[5:].isdigit():
            raise web.HTTPNotFound(text=f"no match {match_id!r}")
        return await self._respond(fake_match(match_id))
