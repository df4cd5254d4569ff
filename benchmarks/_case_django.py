"""Case ``django``: a sync Django view under uvicorn, resourceloop's ``async_to_sync`` vs asgiref's.

``uvicorn --workers 2`` serves a one-file Django project (written to a temporary directory)
with two sync views that each make one GET to an aiohttp upstream on 127.0.0.1:

``resourceloop``
    ``resourceloop.sync.async_to_sync(fetch)()`` with a ``ResourceTemplate`` session: inside
    Django's ``sync_to_async`` thread it runs on uvicorn's own loop.
``asgiref``
    ``asgiref.sync.async_to_sync(fetch)()`` with one ``ClientSession`` per loop kept in a
    hand-written dict, the fastest way without resourceloop (issue #18's 2.08x).

8 client threads with keep-alive connections send the requests; the two views alternate,
``rounds`` runs each, in a rotating order. Measured: requests per second, and the upstream
connections opened during a run.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._case_celery import _free_port, _upstream
from ._harness import Row, Settings, environment

__all__ = ["case_django"]

CLIENTS = 8
MODES = {"resourceloop": "/sync", "asgiref": "/asgiref"}

APP = """
import asyncio, os
import aiohttp
from asgiref.sync import async_to_sync as asgiref_async_to_sync
from django.conf import settings
settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                   SECRET_KEY="bench", INSTALLED_APPS=[], MIDDLEWARE=[], DATABASES={})
from django.core.asgi import get_asgi_application
from django.http import JsonResponse
from django.urls import path
from resourceloop import ResourceManager, ResourceTemplate
from resourceloop.sync import async_to_sync

UPSTREAM = os.environ["RL_UPSTREAM"]
sessions = ResourceTemplate(aiohttp.ClientSession, lambda s: s.close(), name="bench", lazy=True)
by_hand = {}

async def fetch():
    async with (await sessions.acquire()).get(UPSTREAM) as response:
        return len(await response.read())

async def fetch_by_hand():
    loop = asyncio.get_running_loop()
    if loop not in by_hand:
        by_hand[loop] = aiohttp.ClientSession()
    async with by_hand[loop].get(UPSTREAM) as response:
        return len(await response.read())

def sync_view(request):
    return JsonResponse({"n": async_to_sync(fetch)()})

def asgiref_view(request):
    return JsonResponse({"n": asgiref_async_to_sync(fetch_by_hand)()})

urlpatterns = [path("sync", sync_view), path("asgiref", asgiref_view)]
django_app = get_asgi_application()

async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        return await django_app(scope, receive, send)
    manager = ResourceManager(templates=())
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await manager.__aenter__()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await manager.__aexit__(None, None, None)
            for session in by_hand.values():
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
"""


def _load(port: int, path: str, requests: int) -> float:
    """Requests per second for ``requests`` GETs of ``path`` from CLIENTS keep-alive clients."""

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            for _ in range(count):
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, [requests // CLIENTS] * CLIENTS))
    return (requests // CLIENTS * CLIENTS) / (time.perf_counter() - started)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 2).close()
    except OSError:
        return False
    return True


def case_django(settings: Settings, data: dict[str, Any]) -> list[Row]:
    requests = 400 if settings.quick else 2000
    rounds = 1 if settings.quick else 4
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="resourceloop-bench-django-") as tmp:
        where = Path(tmp)
        (where / "bench_django_app.py").write_text(textwrap.dedent(APP))
        with _upstream() as upstream:
            port = _free_port()
            env = {
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": os.pathsep.join(
                    [str(where), str(Path(__file__).resolve().parent.parent)]
                ),
                "RL_UPSTREAM": f"http://127.0.0.1:{upstream.port}/",
                "PYTHONWARNINGS": "ignore",
            }
            argv = [
                *(sys.executable, "-m", "uvicorn", "--workers", "2", "--lifespan", "on"),
                *("--log-level", "warning", "--no-access-log", "--host", "127.0.0.1"),
                *("--port", str(port), "bench_django_app:application"),
            ]
            server = subprocess.Popen(
                argv, cwd=where, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
            try:
                deadline = time.monotonic() + 60
                while not _accepts(port):
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("uvicorn did not start")
                    time.sleep(0.02)
                for path in MODES.values():  # warm both workers and both ways
                    _load(port, path, CLIENTS * 20)
                names = list(MODES)
                for round_ in range(rounds):
                    order = names[round_ % 2 :] + names[: round_ % 2]
                    for mode in order:
                        before = upstream.accepted()
                        rps = _load(port, MODES[mode], requests)
                        results[mode].append(
                            {"rps": rps, "connections": upstream.accepted() - before}
                        )
                server.send_signal(signal.SIGTERM)
                server.wait(60)
            finally:
                if server.poll() is None:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(60)
            deadline = time.monotonic() + 30
            while upstream.open() and time.monotonic() < deadline:
                time.sleep(0.02)  # the upstream notices closed sockets in its own time
            left_open = upstream.open()
    table = markdown(results, requests=requests, rounds=rounds, quick=settings.quick)
    table += f"\nUpstream connections left open after uvicorn's SIGTERM: {left_open}.\n"
    data["django"] = {"requests": requests, "rounds": rounds, "results": results}
    data["django"]["markdown"] = table
    print()
    print(table)
    return []


def markdown(
    results: dict[str, list[dict[str, float]]], *, requests: int, rounds: int, quick: bool
) -> str:
    env = environment()
    resourceloop_rps = [r["rps"] for r in results["resourceloop"]]
    asgiref_rps = [r["rps"] for r in results["asgiref"]]
    paired = statistics.median(a / b for a, b in zip(resourceloop_rps, asgiref_rps, strict=True))
    lines = [
        "# Django ASGI under uvicorn: resourceloop's `async_to_sync` vs asgiref's"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}; {env['python']}; {env['machine']}, {env['cpus']} CPUs (load "
        f"average at start {env['load_average']}); resourceloop {env['resourceloop']} "
        f"(commit {env['commit']})",
        "- command: `python -m benchmarks --cases django"
        + (" --quick`" if quick else "`")
        + " (results copied here from its output directory)",
        "",
        f"`uvicorn --workers 2`, a sync Django view making one GET to an aiohttp upstream on "
        f"127.0.0.1; {CLIENTS} keep-alive client threads, {requests} requests per run, the two "
        f"views alternating, {rounds} run(s) each. Requests per second: median over the runs; "
        "vs asgiref: median of the paired ratios. Connections: upstream connections opened "
        "during a run (the most over the runs).",
        "",
        "| view | requests/s (median) | best run | vs asgiref | connections per run |",
        "|---|--:|--:|--:|--:|",
    ]
    for mode, runs in results.items():
        rps = [r["rps"] for r in runs]
        ratio = f"{paired:.2f}x" if mode == "resourceloop" else "1.00x"
        most = max(int(r["connections"]) for r in runs)
        lines.append(
            f"| {mode} | {statistics.median(rps):.0f} | {max(rps):.0f} | {ratio} | {most} |"
        )
    lines.append("")
    return "\n".join(lines)
