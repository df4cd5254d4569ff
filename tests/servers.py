"""Real servers for the contrib tests: redis-server and PostgreSQL, and their view of clients.

Where the servers are:

* ``RESOURCELOOP_TEST_REDIS_URL`` / ``RESOURCELOOP_TEST_POSTGRES_DSN``: servers someone started
  (``.ci/run`` does, with ``.ci/servers.sh``). The Postgres role must be allowed to read
  ``pg_stat_activity`` for its own sessions and to create a database table or two.
* otherwise the session fixtures start private ones from the binaries (``redis-server`` on
  the PATH; PostgreSQL's ``initdb``/``pg_ctl`` on the PATH or under
  ``/usr/lib/postgresql/*/bin``), on 127.0.0.1, in a temporary directory, stopped at the end.
* if neither works, the tests that need the server are skipped with the reason, except under
  ``CI=true``, where a missing server (or package) fails them: CI must never pass by skipping.

Nothing beyond the Python packages is needed to talk to them: redis through a raw socket,
PostgreSQL through psql, or (without psql, as in a chroot with Python only) a throwaway asyncpg
connection on a loop and thread of its own.

The counts come from the servers themselves (``CLIENT LIST``, ``pg_stat_activity``), filtered
by a client name each test sets, so connections of other tests or processes never count. A
server notices a closed connection in its own time, so :func:`wait_for` polls it until the
expected count, with a deadline that only matters when the code under test is broken.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = [
    "ON_CI",
    "postgres_connections",
    "private_postgres",
    "private_redis",
    "redis_connections",
    "require",
    "unavailable",
    "wait_for",
]

ON_CI = os.environ.get("CI", "").lower() == "true"

#: How long a server may take to notice a closed connection before the test fails.
SERVER_DEADLINE = 20.0


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason`` on a developer's machine; fail under ``CI=true``."""
    if ON_CI:
        pytest.fail(f"CI=true, so this is a failure, not a skip: {reason}", pytrace=False)
    pytest.skip(reason)


def require(module: str) -> Any:
    """Import ``module`` or skip (fail under ``CI=true``) naming the extra to install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        unavailable(f"{module} is not installed ({exc}); pip install -e '.[test]'")


def wait_for(count: Callable[[], int], expected: int, what: str) -> int:
    """Poll ``count()`` until it returns ``expected``; fail with the last value at the deadline."""
    deadline = time.monotonic() + SERVER_DEADLINE
    while True:
        value = count()
        if value == expected or time.monotonic() > deadline:
            assert value == expected, f"{what}: {value}, expected {expected}"
            return value
        time.sleep(0.01)  # the server's own event loop, not ours, has to run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- redis -------------------------------------------------------------------------------------


def _redis_command(url: str, *args: str) -> bytes:
    """One command over a raw socket (no client library), returning the reply's payload."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 10) as s:
        request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        s.sendall(request.encode())
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(65536)
            assert chunk, "redis closed the connection"
            reply += chunk
        header, _, rest = reply.partition(b"\r\n")
        if header.startswith(b"$"):
            size = int(header[1:])
            while len(rest) < size + 2:
                chunk = s.recv(65536)
                assert chunk, "redis closed the connection"
                rest += chunk
            return rest[:size]
        assert header[:1] in (b"+", b":"), header
        return header[1:]


def redis_connections(url: str, client_name: str) -> int:
    """How many connections redis-server has from clients named ``client_name`` (CLIENT LIST)."""
    listing = _redis_command(url, "CLIENT", "LIST").decode()
    return sum(1 for line in listing.splitlines() if f" name={client_name} " in f" {line} ")


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on 127.0.0.1, or skip (fail on CI) if it cannot start."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="resourceloop-redis-") as where:
        port = _free_port()
        server = subprocess.Popen(
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", where),
                *("--save", "", "--appendonly", "no", "--logfile", f"{where}/log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert _redis_command(url, "PING") == b"PONG"
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        unavailable(f"redis-server did not start: {Path(where, 'log').read_text()}")
                    time.sleep(0.01)
            yield url
        finally:
            server.terminate()
            server.wait(30)


# -- PostgreSQL --------------------------------------------------------------------------------


def _psql() -> str:
    found = shutil.which("psql")
    if found is None:
        unavailable("psql is not installed (apt-get install postgresql-client)")
    return found


def _query_with_asyncpg(dsn: str, sql: str) -> str:
    """Where psql is missing (a chroot with the Python packages only): a throwaway asyncpg
    connection, on a loop of its own in a thread of its own, closed before this returns."""
    import asyncio
    import threading

    asyncpg = require("asyncpg")
    out: list[str] = []

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(sql) if sql.lstrip().upper().startswith("SELECT") else []
            if not rows:
                await connection.execute(sql)
            out.append("\n".join("|".join(str(v) for v in row.values()) for row in rows))
        finally:
            await connection.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="postgres-query")
    thread.start()
    thread.join(60)
    assert out, f"the query did not complete: {sql}"
    return out[0]


def postgres_query(dsn: str, sql: str) -> str:
    """Run ``sql`` with psql (no client library under test) and return its unaligned output.

    Without psql, a throwaway asyncpg connection runs it instead.
    """
    if shutil.which("psql") is None:
        return _query_with_asyncpg(dsn, sql)
    result = subprocess.run(
        [_psql(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def postgres_connections(dsn: str, application_name: str) -> int:
    """How many backends PostgreSQL has for ``application_name`` (``pg_stat_activity``)."""
    return int(
        postgres_query(
            dsn,
            f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'",
        )
    )


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A PostgreSQL of our own on 127.0.0.1, or skip (fail on CI) if it cannot start.

    PostgreSQL refuses to run as root; as root, the server runs as the ``postgres`` user.
    """
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("su") is None:
            unavailable("running as root without su: cannot start PostgreSQL as postgres")
        as_user = ["su", "postgres", "-s", "/bin/sh", "-c"]
    with tempfile.TemporaryDirectory(prefix="resourceloop-postgres-") as where:
        os.chmod(where, 0o755)
        data = Path(where, "data")
        port = _free_port()

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            command: list[str] = list(argv)
            if as_user:
                command = [*as_user, " ".join(f"'{a}'" for a in argv)]
            return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

        if as_user:
            shutil.chown(where, "postgres")
        init = run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        if init.returncode != 0:
            unavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={where} "
            "-c max_connections=200 -c fsync=off"
        )
        start = run(pg_ctl, "-D", str(data), "-l", f"{where}/log", "-w", "-o", options, "start")
        if start.returncode != 0:
            unavailable(f"PostgreSQL did not start: {start.stderr.strip()}")
        try:
            postgres_query(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", "CREATE DATABASE resourceloop"
            )
            yield f"postgresql://postgres@127.0.0.1:{port}/resourceloop"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
