"""Case ``celery``: per-task cost and connections per task on Celery's prefork pool (issue #18).

A real ``celery worker -P prefork -c 2 --max-tasks-per-child 25`` on a private redis-server
(broker and result backend, 127.0.0.1), started afresh for every run, runs ``tasks`` tasks that
each make one GET to an upstream aiohttp server on 127.0.0.1, three ways, side by side:

``per-call``
    ``@app.task @async_task(templates=[sessions], portal=False)``: a fresh loop per task, its
    ``ClientSession`` released when the task's loop closes.
``portal``
    ``@app.task @async_task(templates=[sessions])``: each worker child's portal, one session
    per child reused by its tasks, released at ``worker_process_shutdown`` (``install()``).
``async with``
    A hand-written task: ``asyncio.run`` of ``async with aiohttp.ClientSession()``, no
    resourceloop at all.

Measured: wall time from sending the batch to the last result, divided by the tasks (ms per
task; it includes billiard's recycling of children every 25 tasks), the TCP connections the
upstream accepted per task, and the connections still open at the upstream after the worker
stopped (SIGTERM, a warm shutdown). The modes run in a rotating order, ``rounds`` times each;
medians are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ._harness import Row, Settings, environment

__all__ = ["case_celery"]

MODES = ("per-call", "portal", "async with")
TASK = {"per-call": "per_call", "portal": "on_portal", "async with": "by_hand"}
CONCURRENCY = 2
PER_CHILD = 25

APP = """
import asyncio, os
import aiohttp
from celery import Celery
from resourceloop import ResourceTemplate
from resourceloop.contrib.celery import async_task, install

UPSTREAM = os.environ["RL_UPSTREAM"]
app = Celery("bench_celery_app", broker=os.environ["RL_BROKER"], backend=os.environ["RL_BROKER"])
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1,
                worker_hijack_root_logger=False, task_default_queue=os.environ["RL_QUEUE"])
install()
sessions = ResourceTemplate(aiohttp.ClientSession, lambda s: s.close(), name="bench-upstream",
                            lazy=True)

async def get(session):
    async with session.get(UPSTREAM) as response:
        return len(await response.read())

@app.task
@async_task(templates=[sessions])
async def on_portal():
    return await get(await sessions.acquire())

@app.task
@async_task(templates=[sessions], portal=False)
async def per_call():
    return await get(await sessions.acquire())

async def by_hand_body():
    async with aiohttp.ClientSession() as session:
        return await get(session)

@app.task
def by_hand():
    return asyncio.run(by_hand_body())
"""


class _Upstream:
    def __init__(self) -> None:
        self.port = 0
        self.transports: set[asyncio.BaseTransport] = set()
        self.lock = threading.Lock()

    def accepted(self) -> int:
        with self.lock:
            return len(self.transports)

    def open(self) -> int:
        with self.lock:
            return sum(1 for t in self.transports if not t.is_closing())


@contextlib.contextmanager
def _upstream() -> Iterator[_Upstream]:
    upstream = _Upstream()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def hello(request: web.Request) -> web.Response:
        with upstream.lock:
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

    thread = threading.Thread(target=serve, name="bench-upstream", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the upstream did not start")
    try:
        yield upstream
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _redis(where: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the celery case needs redis-server (apt-get install redis-server)")
    port = _free_port()
    server = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(where)),
            *("--save", "", "--appendonly", "no", "--logfile", str(where / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(30)


def _run_once(mode: str, tasks: int, where: Path, env: dict[str, str]) -> dict[str, Any]:
    """One worker, one batch: seconds per task, connections accepted, left open."""
    argv = [
        *(sys.executable, "-m", "celery", "-A", "bench_celery_app", "worker", "-P", "prefork"),
        *("-c", str(CONCURRENCY), "--max-tasks-per-child", str(PER_CHILD)),
        *("-n", f"{env['RL_QUEUE']}@%h", "--without-heartbeat", "--without-gossip"),
        *("--without-mingle", "--loglevel", "INFO"),
    ]
    worker = subprocess.Popen(
        argv,
        cwd=where,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert worker.stderr is not None
        for line in worker.stderr:  # wait for readiness, then drain in a thread
            if " ready." in line:
                break
        else:
            raise RuntimeError(f"the celery worker did not start ({mode})")
        task_seconds: list[float] = []

        def drain(stream: Any = worker.stderr) -> None:
            for line in stream:  # Celery's own timing of each task, in the child
                if " succeeded in " in line:
                    task_seconds.append(float(line.split(" succeeded in ")[1].split("s:")[0]))

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        import bench_celery_app  # type: ignore[import-not-found]
        from celery import group

        task = getattr(bench_celery_app, TASK[mode])
        started = time.perf_counter()
        results = group(task.s() for _ in range(tasks))().get(timeout=600)
        elapsed = time.perf_counter() - started
        assert len(results) == tasks
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
        drainer.join(30)
        return {
            "seconds": elapsed,
            "task_ms": statistics.median(task_seconds) * 1000,
            "returncode": worker.returncode,
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(60)
        if worker.stderr is not None:
            worker.stderr.close()


def case_celery(settings: Settings, data: dict[str, Any]) -> list[Row]:
    tasks = 50 if settings.quick else 300
    rounds = 1 if settings.quick else 3
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="resourceloop-bench-celery-") as tmp:
        where = Path(tmp)
        (where / "bench_celery_app.py").write_text(textwrap.dedent(APP))
        with _redis(where) as broker, _upstream() as upstream:
            env = {
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": os.pathsep.join(
                    [str(where), str(Path(__file__).resolve().parent.parent)]
                ),
                "RL_BROKER": broker,
                "RL_UPSTREAM": f"http://127.0.0.1:{upstream.port}/",
                "RL_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
                "C_FORCE_ROOT": "1",
                "PYTHONWARNINGS": "ignore",
            }
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)  # the client side (this process) imports the same app
            sys.path.insert(0, str(where))
            try:
                for round_ in range(rounds):
                    order = MODES[round_ % 3 :] + MODES[: round_ % 3]
                    for mode in order:
                        before = upstream.accepted()
                        run = _run_once(mode, tasks, where, env)
                        deadline = time.monotonic() + 30
                        while upstream.open() and time.monotonic() < deadline:
                            time.sleep(0.02)  # the server notices closed sockets in its time
                        run["connections"] = upstream.accepted() - before
                        run["left_open"] = upstream.open()
                        results[mode].append(run)
            finally:
                sys.path.remove(str(where))
                sys.modules.pop("bench_celery_app", None)
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
    table = markdown(results, tasks=tasks, rounds=rounds, quick=settings.quick)
    data["celery"] = {"tasks": tasks, "rounds": rounds, "results": results, "markdown": table}
    print()
    print(table)
    return []


def markdown(
    results: dict[str, list[dict[str, Any]]], *, tasks: int, rounds: int, quick: bool
) -> str:
    env = environment()
    lines = [
        "# Celery prefork: per-call loops, the worker's portal, a hand-written `async with`"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}; {env['python']}; {env['machine']}, {env['cpus']} CPUs (load "
        f"average at start {env['load_average']}); resourceloop {env['resourceloop']} "
        f"(commit {env['commit']})",
        "- command: `python -m benchmarks --cases celery"
        + (" --quick`" if quick else "`")
        + " (results copied here from its output directory)",
        "",
        f"`celery worker -P prefork -c {CONCURRENCY} --max-tasks-per-child {PER_CHILD}`, redis "
        f"broker and backend on 127.0.0.1, started afresh per run; {tasks} tasks per run, each "
        "one GET to an aiohttp upstream on 127.0.0.1; the modes in a rotating order, "
        f"{rounds} run(s) each. ms per task: wall time from sending the batch to its last "
        "result over the tasks (child recycling included), median over the runs. Connections: "
        "TCP connections the upstream accepted during a run, per task (median); left open: "
        "at the upstream after the worker's warm shutdown (SIGTERM), the most over the runs. "
        "In the child: Celery's own `succeeded in` time of each task, median of the runs' "
        "medians. billiard sleeps 1 s in each child it ends, so the batch figure moves with "
        "where the recycling falls; the in-child figure does not.",
        "",
        "| mode | ms per task, batch (median) | best run | vs `async with` "
        "| ms per task, in the child (median) | connections per task | left open |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    base = statistics.median(r["seconds"] for r in results["async with"]) if results else 0.0
    for mode in MODES:
        runs = results[mode]
        seconds = statistics.median(r["seconds"] for r in runs)
        best = min(r["seconds"] for r in runs)
        per_task = statistics.median(r["connections"] / tasks for r in runs)
        left = max(r["left_open"] for r in runs)
        in_child = statistics.median(r["task_ms"] for r in runs)
        ratio = f"{seconds / base:.2f}x" if base else ""
        lines.append(
            f"| {mode} | {seconds / tasks * 1000:.2f} | {best / tasks * 1000:.2f} | {ratio} "
            f"| {in_child:.2f} | {per_task:.3f} | {left} |"
        )
    lines.append("")
    return "\n".join(lines)
