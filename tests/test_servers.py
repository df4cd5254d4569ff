"""Tests for `tests/servers.py`: the private servers die with the run that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import servers
from tests._env import CHECKOUT, child_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")

#: A run that starts one private server, says where, then waits to be killed.
CHILD = """
import sys, time
from tests import servers
try:
    with servers.{factory}() as url:
        print("PID", servers.server_pids[url], flush=True)
        time.sleep(600)
except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
    print("UNAVAILABLE", exc, flush=True)
    sys.exit(3)
"""


#: Each factory's binary, and the variable that gives the suite a server instead.
_NEEDS = {
    "private_redis": ("redis-server", "RESOURCELOOP_TEST_REDIS_URL"),
    "private_postgres": ("initdb", "RESOURCELOOP_TEST_POSTGRES_DSN"),
}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie nobody has reaped yet (no init in a container) is dead."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


@pytest.mark.parametrize("factory", ["private_redis", "private_postgres"])
def test_private_server_dies_with_a_killed_run(factory: str) -> None:
    """SIGKILL of the process that started a private server (no cleanup runs) kills the server."""
    binary, variable = _NEEDS[factory]
    if servers.private_binary(binary) is None and os.environ.get(variable):
        # The 3.14/3.15 runs in the sid root: CI gives it its servers and no binaries.
        pytest.skip(f"no {binary} here; the suite's servers come from {variable}")
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD.format(factory=factory))],
        stdout=subprocess.PIPE,
        text=True,
        cwd=CHECKOUT,
        env=child_env(checkout_on_path=True),
    ) as child:
        _kill_and_check(child, factory)


def _kill_and_check(child: subprocess.Popen[str], factory: str) -> None:
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split(maxsplit=1)
        if line and line[0] == "UNAVAILABLE":
            child.wait(30)
            servers.unavailable(line[1].strip())
        assert line, "the child printed nothing"
        assert line[0] == "PID", line
        pid = int(line[1])
        assert _alive(pid)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # the kernel signals the orphan as its parent exits
        alive = _alive(pid)
        if alive:
            os.kill(pid, signal.SIGKILL)  # leave nothing behind, even when the test fails
        assert not alive, f"{factory}'s server (pid {pid}) outlived the killed run"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
