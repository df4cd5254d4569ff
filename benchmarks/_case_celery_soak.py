"""Case ``celery_soak``: Celery prefork under faults, counted by the servers (issue #18's "Done").

A real ``celery worker -P prefork -c 4 --max-tasks-per-child 25`` with a redis broker runs
``tasks`` tasks built as the docs' recipe says (``resourceloop.contrib.celery``'s example:
``@app.task @async_task(templates=[...])``). Each task makes one GET to an aiohttp upstream
through a ``ClientSession`` template and one query through the SQLAlchemy ``AsyncEngine`` template
(``async_engine_template``, non-lazy); the process also declares a non-lazy asyncpg pool that
no task uses, as another module of a real project would. Two modes, one worker each:

``per-call``
    ``@async_task(templates=[sessions, engines], portal=False)``: a loop per task.
``portal``
    ``@async_task(templates=[sessions, engines])``: each worker child's portal.

While the tasks run, faults are injected, one at a time, at fixed fractions of the tasks done:
``kill -9`` of one worker child, a restart of redis-server, a restart of PostgreSQL (fast
shutdown, so its statistics survive), SIGHUP to the main worker process (Celery's warm restart:
it re-executes itself); at the end, SIGTERM (a warm shutdown). redis-server and PostgreSQL are
private to the run (their own ports and directories), so a restart disturbs no one else.

Counted, by the servers themselves: PostgreSQL's ``pg_stat_database`` for the run's database
(``sessions``, ``sessions_abandoned``: a backend whose client vanished without closing), read
from another database so that the harness's own sessions are not counted; the upstream's
accepted TCP connections, and those still open after the worker stopped. Each task writes its
outcome (done, or the exception it raised) to a log; a task with neither is lost.

A fault window runs from the fault's injection until its recovery was seen (the child replaced
and its PostgreSQL sessions gone; redis answering and the worker reconnected; PostgreSQL
accepting connections; the worker ready again) plus ``GRACE`` seconds. A task is in a window
when the span from its publication to its outcome overlaps one. The abandoned sessions of the
kill -9 window are those counted from just before the kill until the killed child's sessions
(found by their client ports) have left ``pg_stat_activity``.

The driver keeps ``IN_FLIGHT`` tasks published and not finished, so that a redis restart loses
a bounded number of queued messages; a task lost in a window frees its slot ``LOST_AFTER`` s
after the window ends, one lost outside any window after ``LOST_OUTSIDE`` s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._case_celery import _free_port, _upstream
from ._harness import Row, Settings, environment

__all__ = ["case_celery_soak", "run_soak"]

MODES = ("per-call", "portal")
TASK = {"per-call": "per_call", "portal": "on_portal"}
CONCURRENCY = 4
PER_CHILD = 25
IN_FLIGHT = 2 * CONCURRENCY
GRACE = 2.0
LOST_AFTER = 15.0
LOST_OUTSIDE = 120.0
#: The faults, each at a fraction of the tasks finished (``kill9`` and ``redis`` for a short run).
FAULTS = {"kill9": 0.1, "redis": 0.3, "postgres": 0.5, "sighup": 0.7}

APP = """
import asyncio, os, time
import aiohttp
from celery import Celery
from sqlalchemy import text
from resourceloop import ResourceTemplate
from resourceloop.contrib.asyncpg import pool_template
from resourceloop.contrib.celery import async_task, install
from resourceloop.contrib.sqlalchemy import async_engine_template

UPSTREAM = os.environ["RL_UPSTREAM"]
LOG = os.environ["RL_LOG"]
app = Celery("soak_celery_app", broker=os.environ["RL_BROKER"])
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1,
                worker_hijack_root_logger=False, task_default_queue=os.environ["RL_QUEUE"],
                task_ignore_result=True)
install()
sessions = ResourceTemplate(aiohttp.ClientSession, lambda s: s.close(), name="soak-upstream",
                            lazy=True)
engines = async_engine_template(os.environ["RL_PG_SQLALCHEMY"], name="soak-engine")
# Declared by another module of the project, used by none of these tasks.
reports = pool_template(os.environ["RL_PG_DSN"], name="soak-reports", min_size=1, max_size=2)


def log(line):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\\n".encode())  # one write per line: children never interleave
    finally:
        os.close(fd)


async def body(i):
    try:
        session = await sessions.acquire()
        async with session.get(UPSTREAM) as response:
            await response.read()
        engine = await engines.acquire()
        async with engine.connect() as connection:
            assert (await connection.execute(text("select 1"))).scalar_one() == 1
    except BaseException as exc:
        log(f"error {i} {os.getpid()} {time.time():.3f} {type(exc).__name__}: {exc!r:.200}")
        raise
    log(f"done {i} {os.getpid()} {time.time():.3f}")


@app.task
@async_task(templates=[sessions, engines])
async def on_portal(i):
    await body(i)


@app.task
@async_task(templates=[sessions, engines], portal=False)
async def per_call(i):
    await body(i)
"""


# -- private servers, restartable on the same port ---------------------------------------------


def _as_postgres() -> Callable[[], None] | None:
    if os.geteuid() != 0:
        return None
    import pwd

    entry = pwd.getpwnam("postgres")

    def become() -> None:  # between fork and exec: system calls only
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return become


def _pg_bin(name: str) -> str:
    import glob

    found = shutil.which(name) if name != "postgres" else None
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found or (candidates[-1] if candidates else None)
    if path is None:
        raise RuntimeError(f"the celery_soak case needs PostgreSQL's {name}")
    return path


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Redis:
    """redis-server on a fixed port of 127.0.0.1, started and restarted by us."""

    def __init__(self, where: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the celery_soak case needs redis-server")
        self.binary = binary
        self.where = where
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    def start(self) -> None:
        self.server = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.where), "--save", "", "--appendonly", "no"),
                *("--logfile", str(self.where / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait(self.ping, "redis-server to answer")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(60)


class Postgres:
    """A PostgreSQL cluster of our own on a fixed port; restarts are fast shutdowns."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.data = where / "data"
        self.port = _free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.database = "soak"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"
        self.admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        os.chmod(self.where, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.where, "postgres")
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"],
            capture_output=True,
            check=True,
            timeout=120,
            preexec_fn=_as_postgres(),
        )
        self.start()
        self.query(f"CREATE DATABASE {self.database}")

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as sock:
                sock.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
                if sock.recv(1) not in (b"S", b"N"):
                    return False
        except OSError:
            return False
        # Accepting a startup packet is not yet accepting sessions (recovery after a restart).
        return (
            subprocess.run(
                [shutil.which("pg_isready") or _pg_bin("pg_isready"), "-q", "-d", self.admin],
                check=False,
                timeout=30,
            ).returncode
            == 0
        )

    def start(self) -> None:
        with open(self.where / "log", "ab") as log:
            self.server = subprocess.Popen(
                [
                    *(_pg_bin("postgres"), "-D", str(self.data)),
                    *("-c", "listen_addresses=127.0.0.1", "-p", str(self.port)),
                    *("-c", f"unix_socket_directories={self.where}", "-c", "fsync=off"),
                    *("-c", "max_connections=200"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_as_postgres(),  # noqa: PLW1509 - system calls only
            )
        _wait(self.accepts, "PostgreSQL to accept connections")

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: a fast shutdown, which keeps the statistics (SIGQUIT would drop them)."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(sig)
            self.server.wait(120)

    def query(self, sql: str) -> str:
        return _psql(self.admin, sql)


# -- the worker's processes -------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _client_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of ``pid``'s TCP connections to ``server_port`` (from /proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.split(":")[1], 16) == server_port:
                ports.add(int(local.split(":")[1], 16))
    return ports


@dataclass
class Window:
    fault: str
    start: float
    end: float = float("inf")
    note: str = ""


@dataclass
class Soak:
    """One mode's run: what was published, what came back, and the windows."""

    mode: str
    tasks: int
    published: dict[int, float] = field(default_factory=dict)
    done: dict[int, float] = field(default_factory=dict)
    errors: dict[int, tuple[float, str]] = field(default_factory=dict)
    lost: dict[int, float] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)

    def finished(self) -> int:
        return len(self.done) + len(self.errors) + len(self.lost)

    def in_window(self, start: float, end: float) -> bool:
        return any(start <= w.end and end >= w.start for w in self.windows)


def _worker(where: Path, env: dict[str, str], queue: str) -> subprocess.Popen[str]:
    # The ``celery`` script, as users run it: SIGHUP re-executes ``sys.argv``, which under
    # ``python -m celery`` is celery/__main__.py, and that fails to run as a script.
    celery = Path(sys.executable).with_name("celery")
    argv = [
        *(sys.executable, str(celery), "-A", "soak_celery_app", "worker", "-P", "prefork"),
        *("-c", str(CONCURRENCY), "--max-tasks-per-child", str(PER_CHILD)),
        *("-n", f"{queue}@%h", "--without-heartbeat", "--without-gossip"),
        *("--without-mingle", "--loglevel", "INFO"),
    ]
    return subprocess.Popen(
        argv,
        cwd=where,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


class _Worker:
    """The celery worker and its stderr (read by threads); started again if it exits.

    Celery 5.7 / kombu 5.7 can die on a redis restart: when the consumer's reconnection is
    refused while messages are unacknowledged, closing the broken connection raises
    ``AttributeError`` in kombu's ``restore_unacked`` (not a connection error, so Celery's
    ``ignore_errors`` lets it through) and the worker stops. A supervisor (systemd,
    Kubernetes) would start it again; so does this, and the report says so.
    """

    def __init__(self, where: Path, env: dict[str, str], queue: str) -> None:
        self.where, self.env, self.queue = where, env, queue
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.start()

    @property
    def proc(self) -> subprocess.Popen[str]:
        return self.procs[-1]

    def start(self) -> None:
        started = time.time()
        proc = _worker(self.where, self.env, self.queue)
        self.procs.append(proc)
        reader = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        reader.start()
        self.readers.append(reader)
        _wait(lambda: self.seen(" ready.", started), "the celery worker to be ready", 120)

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.lock:
                self.lines.append((time.time(), line))

    def seen(self, text: str, after: float) -> bool:
        with self.lock:
            return any(text in line for at, line in self.lines if at >= after)

    def last_error(self, after: float) -> str:
        with self.lock:
            found = [ln.strip() for at, ln in self.lines if at >= after and "Error" in ln]
        return found[-1][:200] if found else "no error line"

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
        for reader in self.readers:
            reader.join(30)
        for proc in self.procs:
            if proc.stderr is not None:
                proc.stderr.close()


def run_soak(
    mode: str,
    tasks: int,
    *,
    faults: dict[str, float],
    where: Path,
    redis: Redis,
    postgres: Postgres | None,
    pg_dsn: str,
    upstream_url: str,
    accepted: Callable[[], int],
    left_open: Callable[[], int],
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Run ``tasks`` tasks in ``mode`` with ``faults``; return the counts (see the module).

    ``postgres`` is the restartable server behind ``pg_dsn`` (None: no PostgreSQL restart, and
    ``pg_dsn``'s database is the one counted, through its own server).
    """
    from celery import Celery

    queue = f"soak-{uuid.uuid4().hex[:8]}"
    log = where / f"log-{queue}"
    log.touch()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(where), str(Path(__file__).resolve().parent.parent)]),
        "RL_BROKER": redis.url,
        "RL_UPSTREAM": upstream_url,
        "RL_QUEUE": queue,
        "RL_LOG": str(log),
        "RL_PG_DSN": pg_dsn,
        "RL_PG_SQLALCHEMY": pg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        "C_FORCE_ROOT": "1",
        "PYTHONWARNINGS": "ignore",
    }
    (where / "soak_celery_app.py").write_text(textwrap.dedent(APP))
    # The driver publishes by name through an app of its own: importing the worker's app here
    # would make its templates (and its Celery app, as the current one) live in this process.
    driver = Celery("soak-driver", broker=redis.url, set_as_current=False)
    name = f"soak_celery_app.{TASK[mode]}"
    soak = Soak(mode, tasks)

    sessions_before, abandoned_before = _stable_stats(pg_dsn)
    accepted_before = accepted()
    started = time.time()
    worker = _Worker(where, env, queue)
    try:
        pending = dict(faults)
        offset = 0
        next_index = 0
        kill_abandoned = 0
        while soak.finished() < tasks:
            # read outcomes
            with open(log) as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            for line in complete.splitlines():
                kind, index, _pid, at, *rest = line.split(" ", 4)
                i = int(index)
                if i in soak.done or i in soak.errors:
                    continue
                soak.lost.pop(i, None)
                if kind == "done":
                    soak.done[i] = float(at)
                else:
                    soak.errors[i] = (float(at), " ".join(rest))
            now = time.time()
            outstanding = [
                i
                for i in soak.published
                if i not in soak.done and i not in soak.errors and i not in soak.lost
            ]
            for i in outstanding:
                sent = soak.published[i]
                ended = [w.end for w in soak.windows if w.end >= sent]
                if (ended and now - max(ended) > LOST_AFTER) or now - sent > LOST_OUTSIDE:
                    soak.lost[i] = now
            # a fault, once its share of the tasks has finished
            for fault, share in list(pending.items()):
                if soak.finished() >= share * tasks:
                    del pending[fault]
                    progress(f"{mode}: {soak.finished()} finished, injecting {fault}")
                    window, abandoned = _inject(fault, worker, redis, postgres, pg_dsn)
                    kill_abandoned += abandoned
                    soak.windows.append(window)
                    progress(
                        f"{mode}: {fault} recovered after {window.end - GRACE - window.start:.1f} s"
                    )
            if worker.exited():  # not after a fault we injected: a window of its own
                exited = time.time()
                why = worker.last_error(soak.windows[-1].start if soak.windows else started)
                worker.start()
                soak.windows.append(Window("worker exit", exited, time.time() + GRACE, why))
            # publish up to the bound
            in_flight = sum(
                1
                for i in soak.published
                if i not in soak.done and i not in soak.errors and i not in soak.lost
            )
            while in_flight < IN_FLIGHT and next_index < tasks:
                try:
                    driver.send_task(name, args=(next_index,), queue=queue, retry=False)
                except Exception:  # the broker is down: try again on the next pass
                    time.sleep(0.05)
                    break
                soak.published[next_index] = time.time()
                next_index += 1
                in_flight += 1
            time.sleep(0.005)
        stopped = time.time()
        worker.proc.send_signal(signal.SIGTERM)  # a warm shutdown
        returncode = worker.proc.wait(180)
        # Counted below whatever they are: a session or connection left is a finding.
        with contextlib.suppress(RuntimeError):
            _wait(lambda: _backends(pg_dsn) == 0, "PostgreSQL sessions to end", 60)
        with contextlib.suppress(RuntimeError):
            _wait(lambda: left_open() == 0, "upstream connections to close", 30)
        pg_left = _backends(pg_dsn)
        sessions_after, abandoned_after = _stable_stats(pg_dsn)
        failed_outside = [
            i for i, (at, _) in soak.errors.items() if not soak.in_window(soak.published[i], at)
        ]
        lost_outside = [
            i for i, at in soak.lost.items() if not soak.in_window(soak.published[i], at)
        ]
        ran = len(soak.done) + len(soak.errors)
        result = {
            "mode": mode,
            "tasks": tasks,
            "done": len(soak.done),
            "failed": len(soak.errors),
            "failed_outside": len(failed_outside),
            "lost": len(soak.lost),
            "lost_outside": len(lost_outside),
            "errors": sorted({why for _, why in soak.errors.values()})[:10],
            "pg_sessions": sessions_after - sessions_before,
            "pg_sessions_per_task": (sessions_after - sessions_before) / max(ran, 1),
            "abandoned": abandoned_after - abandoned_before,
            "abandoned_kill9": kill_abandoned,
            "abandoned_outside_kill9": abandoned_after - abandoned_before - kill_abandoned,
            "upstream": accepted() - accepted_before,
            "upstream_per_task": (accepted() - accepted_before) / max(ran, 1),
            "upstream_left_open": left_open(),
            "pg_left_open": pg_left,
            "worker_returncode": returncode,
            "worker_starts": len(worker.procs),
            "seconds": round(stopped - started, 1),
            "windows": [
                {"fault": w.fault, "seconds": round(w.end - GRACE - w.start, 2), "note": w.note}
                for w in soak.windows
            ],
        }
        return result
    except BaseException:
        with worker.lock:
            kept = [line for _, line in worker.lines if " Task soak_celery_app." not in line]
            tail = "".join(kept[-80:])
        print(f"\nthe worker's last lines:\n{tail}", file=sys.stderr)
        raise
    finally:
        worker.close()
        driver.close()


def _psql(dsn: str, sql: str) -> str:
    result = subprocess.run(
        [shutil.which("psql") or _pg_bin("psql"), "-X", "-q", "-A", "-t", "-d", dsn, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr}")
    return result.stdout.strip()


def _admin(pg_dsn: str) -> str:
    """The server's ``postgres`` database: the harness's own sessions are not counted."""
    return pg_dsn.rsplit("/", 1)[0] + "/postgres"


def _pg_stats(pg_dsn: str) -> tuple[int, int]:
    """``(sessions, sessions_abandoned)`` of ``pg_dsn``'s database, read from another one."""
    database = pg_dsn.rsplit("/", 1)[1]
    row = _psql(
        _admin(pg_dsn),
        f"SELECT sessions, sessions_abandoned FROM pg_stat_database WHERE datname = '{database}'",
    )
    sessions, abandoned = row.split("|")
    return int(sessions), int(abandoned)


def _backends(pg_dsn: str, ports: set[int] | None = None) -> int:
    """Backends of ``pg_dsn``'s database (those of these client ports only, if given)."""
    database = pg_dsn.rsplit("/", 1)[1]
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"
    if ports is not None:
        if not ports:
            return 0
        sql += f" AND client_port IN ({','.join(map(str, sorted(ports)))})"
    return int(_psql(_admin(pg_dsn), sql))


def _stable_stats(pg_dsn: str) -> tuple[int, int]:
    """The counts once two reads 0.5 s apart agree (a backend reports them as it ends)."""
    last = _pg_stats(pg_dsn)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _pg_stats(pg_dsn)
        if now == last:
            return now
        last = now
    return last


def _inject(
    fault: str,
    worker: _Worker,
    redis: Redis,
    postgres: Postgres | None,
    pg_dsn: str,
) -> tuple[Window, int]:
    """Inject ``fault``; wait for its recovery; the window, and its abandoned sessions (kill -9)."""
    started = time.time()
    abandoned = 0
    note = ""
    if fault == "kill9":
        pg_port = urlsplit(pg_dsn).port or 5432
        while True:  # a child may end (recycled) between its choice and the kill: choose again
            children = _children(worker.proc.pid)
            if not children:
                time.sleep(0.02)
                continue
            # the child with the most PostgreSQL connections: the worst case for abandonment
            victim = max(children, key=lambda pid: len(_client_ports(pid, pg_port)))
            ports = _client_ports(victim, pg_port)
            before = _pg_stats(pg_dsn)[1]
            started = time.time()
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            break
        _wait(
            lambda: victim not in (now := _children(worker.proc.pid)) and len(now) >= CONCURRENCY,
            "the pool to replace the killed child",
        )
        _wait(lambda: _backends(pg_dsn, ports) == 0, "the killed child's sessions to end")
        deadline = time.monotonic() + 10  # its backends counted them as they ended
        while _pg_stats(pg_dsn)[1] - before < len(ports) and time.monotonic() < deadline:
            time.sleep(0.05)
        abandoned = _pg_stats(pg_dsn)[1] - before
        note = f"child {victim} had {len(ports)} PostgreSQL session(s)"
    elif fault == "redis":
        redis.stop()
        redis.start()
        _wait(
            lambda: worker.seen("Connected to redis", started) or worker.exited(),
            "the worker to reconnect",
            120,
        )
        if worker.exited():
            note = f"the worker exited ({worker.last_error(started)}); started again"
            worker.start()
    elif fault == "postgres":
        assert postgres is not None
        postgres.stop()
        postgres.start()
    elif fault == "sighup":
        worker.proc.send_signal(signal.SIGHUP)
        _wait(lambda: worker.seen(" ready.", started), "the worker to restart", 180)
    else:
        raise ValueError(fault)
    return Window(fault, started, time.time() + GRACE, note), abandoned


@contextlib.contextmanager
def soak_servers() -> Iterator[tuple[Redis, Postgres]]:
    """A private redis-server and PostgreSQL, each in a directory of its own, stopped after."""
    with tempfile.TemporaryDirectory(prefix="resourceloop-soak-") as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL runs as the postgres user when we are root
        redis = Redis(Path(tmp, "redis"))
        redis.where.mkdir()
        postgres = Postgres(Path(tmp, "postgres"))
        postgres.where.mkdir()
        try:
            redis.start()
            postgres.init()
            yield redis, postgres
        finally:
            redis.stop()
            postgres.stop()


def case_celery_soak(settings: Settings, data: dict[str, Any]) -> list[Row]:
    tasks = 200 if settings.quick else 3000
    env = environment()  # at the start: the code that ran, whatever is edited meanwhile
    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="resourceloop-bench-soak-") as tmp,
        soak_servers() as (redis, postgres),
        _upstream() as upstream,
    ):
        for mode in MODES:
            result = run_soak(
                mode,
                tasks,
                faults=FAULTS,
                where=Path(tmp),
                redis=redis,
                postgres=postgres,
                pg_dsn=postgres.dsn,
                upstream_url=f"http://127.0.0.1:{upstream.port}/",
                accepted=upstream.accepted,
                left_open=upstream.open,
                progress=lambda line: print(f"\n  {line}", end="", flush=True),
            )
            results.append(result)
    table = markdown(results, tasks=tasks, quick=settings.quick, env=env)
    data["celery_soak"] = {"tasks": tasks, "results": results, "markdown": table}
    print()
    print(table)
    return []


def markdown(results: list[dict[str, Any]], *, tasks: int, quick: bool, env: dict[str, Any]) -> str:
    lines = [
        "# Celery prefork soak: faults injected, counted by redis' and PostgreSQL's own books"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}; {env['python']}; {env['machine']}, {env['cpus']} CPUs (load "
        f"average at start {env['load_average']}); resourceloop {env['resourceloop']} "
        f"(commit {env['commit']}{', with uncommitted changes' if env['dirty'] else ''})",
        "- command: `python -m benchmarks --cases celery_soak"
        + (" --quick" if quick else "")
        + " --output DIR` (this file copied from DIR)",
        "",
        f"`celery worker -P prefork -c {CONCURRENCY} --max-tasks-per-child {PER_CHILD}`, a "
        f"private redis-server as broker, a private PostgreSQL 15; {tasks} tasks per mode, "
        f"at most {IN_FLIGHT} in flight; each task one GET to an aiohttp upstream (a "
        "`ClientSession` template) and one `select 1` through the SQLAlchemy `AsyncEngine` "
        "template, `@async_task(templates=[sessions, engines])` as the docs' recipe; a non-lazy "
        "asyncpg pool template no task uses is declared too. Faults, at "
        + ", ".join(f"{name} {share:.0%}" for name, share in FAULTS.items())
        + " of the tasks finished, then SIGTERM. A fault window lasts from the injection "
        f"until its recovery was seen, plus {GRACE:g} s (see `benchmarks/_case_celery_soak.py`).",
        "",
        "| mode | tasks done | failed in windows | failed outside | lost in windows "
        "| lost outside | PG sessions per task | PG abandoned, kill -9 window "
        "| PG abandoned outside it | upstream connections per task "
        "| left open after SIGTERM (upstream, PG) | seconds |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r['mode']} | {r['done']} | {r['failed'] - r['failed_outside']} "
            f"| {r['failed_outside']} | {r['lost'] - r['lost_outside']} | {r['lost_outside']} "
            f"| {r['pg_sessions_per_task']:.3f} | {r['abandoned_kill9']} "
            f"| {r['abandoned_outside_kill9']} | {r['upstream_per_task']:.3f} "
            f"| {r['upstream_left_open']}, {r['pg_left_open']} | {r['seconds']:.0f} |"
        )
    by_mode = {r["mode"]: r for r in results}
    targets = [
        (
            "0 failed or lost tasks outside fault windows",
            all(r["failed_outside"] + r["lost_outside"] == 0 for r in results),
        ),
        (
            "0 PostgreSQL sessions abandoned outside the kill -9 window",
            all(r["abandoned_outside_kill9"] == 0 for r in results),
        ),
    ]
    if "portal" in by_mode:
        targets.append(
            (
                "portal: <= 0.05 upstream connections per task",
                by_mode["portal"]["upstream_per_task"] <= 0.05,
            )
        )
    if "per-call" in by_mode:
        targets.append(
            (
                "per-call: <= 1.1 PostgreSQL sessions per task",
                by_mode["per-call"]["pg_sessions_per_task"] <= 1.1,
            )
        )
    lines += ["", "Targets (issue #18):", ""]
    lines += [f"- {what}: {'holds' if held else '**does not hold**'}" for what, held in targets]
    lines += [
        "",
        "Seconds are the whole run's, faults and recovery included, on a machine shared with "
        "other work: not a throughput figure.",
    ]
    lines += ["", "Fault windows (injection to recovery, without the grace):", ""]
    for r in results:
        for w in r["windows"]:
            note = f" ({w['note']})" if w["note"] else ""
            lines.append(f"- {r['mode']}, {w['fault']}: {w['seconds']:.2f} s{note}")
    errors = sorted({e for r in results for e in r["errors"]})
    if errors:
        lines += ["", "Exceptions the failed tasks raised (distinct, at most 10 per mode):", ""]
        lines += [f"- `{e}`" for e in errors]
    lines.append("")
    return "\n".join(lines)
