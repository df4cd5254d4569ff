"""A real aiohttp server on 127.0.0.1 for the tests, plus file-descriptor counting.

The server runs its own event loop in a daemon thread and serves Riot-like JSON (a summoner, its
match history, matches) so that the seed example can run against it unchanged. Its sockets are
opened before a test takes its fd baseline, and it closes only when the test session ends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web

__all__ = [
    "Server",
    "client_connections",
    "count_fds",
    "match_duration",
    "running_server",
    "self_signed_tls",
]

MATCHES_PER_HISTORY = 8


def _server_side_inodes(port: int) -> set[str]:
    """Inodes of TCP sockets whose local port is ``port``: the server's listener and accepts."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except FileNotFoundError:  # pragma: no cover - no IPv6 in this kernel
            continue
    return inodes


def count_fds(server: Server | None = None) -> int:
    """How many file descriptors this process has open right now (Linux).

    With ``server``, the server's own sockets (its listener and the connections it accepted)
    are left out: the server closes its side of a connection in its own thread, some time after
    the client closed, so counting them would make the tests depend on timing.
    """
    if server is None:
        return len(os.listdir("/proc/self/fd"))
    skip = _server_side_inodes(server.port)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the fd of listdir itself, already closed
            continue
        if target.startswith("socket:[") and target[8:-1] in skip:
            continue
        count += 1
    return count


def client_connections(server: Server) -> int:
    """How many of this process's sockets are client connections to ``server``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if int(fields[2].rsplit(":", 1)[1], 16) == server.port:
                        inodes.add(fields[9])
        except FileNotFoundError:  # pragma: no cover - no IPv6 in this kernel
            continue
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def match_duration(match_id: str) -> int:
    """The duration the server reports for ``match_id``: deterministic, so tests can check it."""
    return 1_000 * (sum(map(ord, match_id)) % 97 + 1)


class Server:
    """Where the test server listens, and how many requests it answered."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        self.port = port
        self.tls = tls
        self.requests = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


def _app(server_box: list[Server]) -> web.Application:
    async def summoner(request: web.Request) -> web.Response:
        server_box[0].requests += 1
        name = request.match_info["name"]
        return web.json_response({"name": name, "puuid": f"puuid-{name}"})

    async def history(request: web.Request) -> web.Response:
        server_box[0].requests += 1
        puuid = request.match_info["puuid"]
        ids = [f"{puuid}-m{i}" for i in range(MATCHES_PER_HISTORY)]
        return web.json_response({"puuid": puuid, "matches": ids})

    async def match(request: web.Request) -> web.Response:
        server_box[0].requests += 1
        match_id = request.match_info["match_id"]
        return web.json_response(
            {"id": match_id, "info": {"duration_millis": match_duration(match_id)}}
        )

    async def hello(request: web.Request) -> web.Response:
        server_box[0].requests += 1
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/summoner/{name}", summoner)
    app.router.add_get("/summoner/{puuid}/matches", history)
    app.router.add_get("/match/{match_id}", match)
    return app


@contextmanager
def running_server(ssl_context: ssl.SSLContext | None = None) -> Iterator[Server]:
    """Serve on an ephemeral 127.0.0.1 port from a daemon thread until the block ends.

    With ``ssl_context``, the server speaks HTTPS (``Server.url`` says so).
    """
    box: list[Server] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(box), handle_signals=False)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        loop.run_until_complete(site.start())
        box.append(Server(runner.addresses[0][1], tls=ssl_context is not None))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="test-aiohttp-server", daemon=True)
    thread.start()
    if not ready.wait(30):  # pragma: no cover - only when the server cannot start at all
        raise RuntimeError("the test aiohttp server did not start")
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def self_signed_tls(where: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway certificate for 127.0.0.1 in ``where``: the server's context, the client's.

    Skips the calling test when the ``openssl`` command is missing.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    return server_context, ssl.create_default_context(cafile=str(cert))
