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

The private servers die with the test run however it ends (a failure, Ctrl-C, ``timeout``
or a CI runner killing pytest with SIGKILL): each is a direct child of the pytest process, started
with ``PR_SET_PDEATHSIG`` (Linux), so the kernel kills it when the thread that started it ends.
PostgreSQL runs as ``postgres`` in the foreground (no ``pg_ctl start``, which would detach it);
its backends exit by themselves once their postmaster is gone.

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
import ctypes
import ctypes.util
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = [
    "ON_CI",
    "postgres_connections",
    "private_binary",
    "private_postgres",
    "private_redis",
    "redis_connections",
    "require",
    "server_pids",
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


#: The pid of each private server this process started and has not stopped yet, by URL.
server_pids: dict[str, int] = {}

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(user: str | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: become ``user`` (as root), then ask for SIGKILL when the parent dies.

    The parent-death signal is cleared when credentials change, so it is set after them. If
    the parent died before this ran, the child is already an orphan: it kills itself. The
    function runs between fork and exec in a process that may have other threads, so it only
    makes system calls: ``pwd`` and libc are looked up here, in the parent.
    """
    parent = os.getpid()
    uid = gid = None
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:
        if gid is not None and uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        if sys.platform == "linux":
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _stop(server: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop ``server`` with ``sig``; SIGKILL it if it has not exited within 30 s."""
    if server.poll() is None:
        server.send_signal(sig)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


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
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - takes no lock: _die_with_parent
        )
        url = f"redis://127.0.0.1:{port}/0"
        server_pids[url] = server.pid
        try:
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
            server_pids.pop(url, None)
            _stop(server)


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


@contextlib.contextmanager
def own_database(dsn: str) -> Iterator[str]:
    """A database of our own, created on the server ``dsn`` names and dropped after.

    Its books (``pg_stat_database``) count only what this process's tests do there.
    """
    parts = urlsplit(dsn)
    name = f"resourceloop_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    postgres_query(dsn, f"CREATE DATABASE {name}")
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        postgres_query(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_connections(dsn: str, application_name: str) -> int:
    """How many backends PostgreSQL has for ``application_name`` (``pg_stat_activity``)."""
    return int(
        postgres_query(
            dsn,
            f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'",
        )
    )


def private_binary(name: str) -> str | None:
    """Where the program a private server needs is (``redis-server``, ``initdb``...), or None."""
    return _pg_bin(name)


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
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        unavailable("PostgreSQL's initdb/postgres are not installed (apt-get install postgresql)")
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            import pwd

            pwd.getpwnam(user)
        except KeyError:
            unavailable("running as root without a postgres user: cannot start PostgreSQL")
    with tempfile.TemporaryDirectory(prefix="resourceloop-postgres-") as where:
        os.chmod(where, 0o755)
        data = Path(where, "data")
        port = _free_port()
        if user is not None:
            shutil.chown(where, user)
        init = subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=_die_with_parent(user),
        )
        if init.returncode != 0:
            unavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        # The postmaster in the foreground, as our child: pg_ctl would detach it from us.
        with open(f"{where}/log", "wb") as log:
            server = subprocess.Popen(
                [
                    *(postgres, "-D", str(data), "-c", "listen_addresses=127.0.0.1"),
                    *("-p", str(port), "-c", f"unix_socket_directories={where}"),
                    *("-c", "max_connections=200", "-c", "fsync=off"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(user),  # noqa: PLW1509 - takes no lock: _die_with_parent
            )
        dsn = f"postgresql://postgres@127.0.0.1:{port}/resourceloop"
        server_pids[dsn] = server.pid
        try:
            deadline = time.monotonic() + 60
            while not _accepts(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"PostgreSQL did not start: {Path(where, 'log').read_text()}")
                time.sleep(0.05)
            postgres_query(
                f"postgresql://postgres@127.0.0.1:{port}/postgres", "CREATE DATABASE resourceloop"
            )
            yield dsn
        finally:
            server_pids.pop(dsn, None)
            _stop(server, signal.SIGQUIT)  # immediate shutdown, as pg_ctl -m immediate


def _accepts(port: int) -> bool:
    """Whether PostgreSQL accepts connections on ``port`` (a startup packet answered)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as sock:
            # An SSLRequest: a running server answers with one byte, "S" or "N".
            sock.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False
