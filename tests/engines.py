"""What the engine tests share: an upstream that counts connections, and processes that die.

The upstream is a real aiohttp server on 127.0.0.1, in a thread of the test process, that
counts the connections it accepted (each request's transport, as the server sees it) and how
many of them are still open: the server's own view, not the clients'.

Worker processes (a Celery worker, gunicorn, uvicorn) start in a session of their own, with
``PR_SET_PDEATHSIG`` so that they die with the test process however it ends, and are killed
(with their whole process group) when the block ends. Readiness is awaited on their output,
never guessed with a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiohttp import web

__all__ = ["ROOT", "Upstream", "running_upstream", "wait_until", "worker_process"]

ROOT = Path(__file__).resolve().parent.parent

#: A guard for waits on another process: only reached when the code under test is broken.
DEADLINE = 60.0


class Upstream:
    """An aiohttp server counting the connections it accepted and those still open."""

    def __init__(self) -> None:
        self.port = 0
        self.transports: set[asyncio.BaseTransport] = set()
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def accepted(self) -> int:
        with self.lock:
            return len(self.transports)

    @property
    def open(self) -> int:
        with self.lock:
            return sum(1 for t in self.transports if not t.is_closing())


@contextlib.contextmanager
def running_upstream() -> Iterator[Upstream]:
    """Serve on an ephemeral port of 127.0.0.1 from a daemon thread until the block ends."""
    upstream = Upstream()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def hello(request: web.Request) -> web.Response:
        with upstream.lock:
            upstream.requests += 1
            if request.transport is not None:
                upstream.transports.add(request.transport)
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=3600)

    def serve() -> None:
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        upstream.port = runner.addresses[0][1]
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="test-upstream", daemon=True)
    thread.start()
    if not ready.wait(30):  # pragma: no cover - only when the server cannot start at all
        raise RuntimeError("the upstream did not start")
    try:
        yield upstream
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the test process ends


@contextlib.contextmanager
def worker_process(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str], ready: str
) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv``; wait until a line of its stderr contains ``ready``; kill its group after.

    stderr is read by a thread into ``proc.lines`` (a list), so the pipe never fills.
    """
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if ready in line:
                seen.set()
        seen.set()  # EOF: it ended

    reader = threading.Thread(target=read, name="test-worker-stderr", daemon=True)
    reader.start()
    proc.lines = lines  # type: ignore[attr-defined]
    try:
        if not seen.wait(DEADLINE) or proc.poll() is not None:
            raise AssertionError(f"{argv[:4]} did not become ready:\n{''.join(lines)}")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(DEADLINE)
        reader.join(DEADLINE)
        if proc.stderr is not None:
            proc.stderr.close()


def wait_until(predicate: object, what: str) -> None:
    """Poll ``predicate()`` (another process's state); fail at the deadline with ``what``."""
    assert callable(predicate)
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.02)
