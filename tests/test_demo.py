"""Tests for ``python -m resourceloop demo`` (`resourceloop.__main__`, `resourceloop.demo`).

The command runs in a subprocess, as a user runs it, with small counts and ``--json``; the
JSON is checked field by field. The server and the client models are also checked in-process.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the demo needs the aiohttp extra")

from resourceloop.demo import server as demo_server
from resourceloop.demo.measure import Progress, count_fds, summarize
from tests._env import child_env

TIMEOUT = 120


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resourceloop", "demo", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**child_env(), **(env or {})},
        check=False,
    )


def _modes(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mode["mode"]: mode for mode in document["modes"]}


def test_demo_json_every_resourceloop_mode_is_clean() -> None:
    """Each resourceloop mode releases every session gracefully; the baseline leaks."""
    result = _demo("--threads", "2", "--summoners", "4", "--json", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # every warning was captured, none printed at exit
    document = json.loads(result.stdout)
    assert document["ok"] is True
    modes = _modes(document)
    assert list(modes) == ["managed", "decorator", "unmanaged", "portal", "baseline"]
    for name in ("managed", "decorator", "unmanaged", "portal"):
        mode = modes[name]
        per_call = 1 if name == "portal" else 4  # loops and sessions: one per call, or one
        assert mode["uses_resourceloop"] is True
        assert mode["calls"] == mode["correct_answers"] == 4
        assert mode["loops"] == per_call
        assert mode["sessions_created"] == mode["released_gracefully"] == per_call
        assert mode["released_forcefully"] == 0
        assert mode["sessions_still_open"] == 0
        assert mode["fds_after"] == mode["fds_before"]
        assert mode["warnings"] == mode["errors"] == 0
        assert mode["leaked"] is False
    # Each per-call session opens its own connections; the portal's one session reuses them:
    # two threads with up to 5 requests in flight each need 10 connections at most.
    assert all(modes[name]["connections"] >= 4 for name in ("managed", "decorator", "unmanaged"))
    assert 1 <= modes["portal"]["connections"] <= 10
    baseline = modes["baseline"]
    assert baseline["uses_resourceloop"] is False
    assert baseline["correct_answers"] == 4
    assert baseline["sessions_created"] == baseline["sessions_still_open"] == 4
    assert baseline["released_gracefully"] == 0
    assert baseline["fds_after"] > baseline["fds_before"]
    assert baseline["warnings_when_dropped"] > 0
    assert any("Unclosed client session" in w for w in baseline["warning_samples"])
    assert baseline["fds_after_dropping_sessions"] == baseline["fds_before"]
    # Each call asked the server for a summoner, a history and 5 matches.
    assert document["server"]["requests"] == 5 * 4 * 7


def test_demo_table() -> None:
    """The default output is a table with one row per chosen mode and an OK verdict."""
    result = _demo("--threads", "2", "--summoners", "2", "--modes", "unmanaged,portal,managed")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("mode "))
    for column in ("loops", "connections", "sessions", "graceful", "forced", "fds before"):
        assert column in header
    chosen = (["managed"], ["unmanaged"], ["portal"])
    rows = [line.split()[0] for line in lines if line.split()[:1] in chosen]
    assert rows == ["unmanaged", "portal", "managed"]
    assert lines[-2].startswith("OK: ")


def test_demo_fails_when_resourceloop_cannot_release_gracefully() -> None:
    """With the close hook disabled the unmanaged mode is not clean, and the exit status says so."""
    result = _demo(
        "--threads",
        "2",
        "--summoners",
        "2",
        "--modes",
        "unmanaged",
        "--json",
        env={"RESOURCELOOP_CLOSE_HOOK": "0"},
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False
    mode = _modes(document)["unmanaged"]
    assert mode["leaked"] is True
    assert mode["released_gracefully"] == 0
    assert any("UngracefulLoopWarning" in w for w in mode["warning_samples"])


def test_demo_help_and_bad_options() -> None:
    """``--help`` documents every option; a bad option exits with status 2."""
    result = _demo("--help")
    assert result.returncode == 0
    for option in ("--threads", "--summoners", "--matches", "--modes", "--latency", "--json"):
        assert option in result.stdout
    assert "baseline" in result.stdout
    bad = _demo("--modes", "managed,nonsense")
    assert bad.returncode == 2
    assert "unknown mode 'nonsense'" in bad.stderr
    top = subprocess.run(
        [sys.executable, "-m", "resourceloop", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=child_env(),
        check=False,
    )
    assert top.returncode == 0
    assert "demo" in top.stdout


def test_nothing_imports_the_demo() -> None:
    """Importing resourceloop and its other modules never imports ``resourceloop.demo``."""
    code = (
        "import sys, resourceloop, resourceloop.queue, resourceloop.sync, "
        "resourceloop.contrib.aiohttp, resourceloop.pytest_plugin\n"
        "assert not [m for m in sys.modules if m.startswith('resourceloop.demo')], sys.modules\n"
        "assert 'aiohttp.web' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT, env=child_env())


def test_server_data_is_deterministic_and_served() -> None:
    """The server answers the three endpoints with the data the checks expect."""
    with demo_server.DemoServer(latency=0) as server:
        base = server.url
        with urllib.request.urlopen(f"{base}/lol/summoner/v4/summoners/by-name/ab%20c") as r:
            summoner = json.load(r)
        assert summoner == demo_server.fake_summoner("ab c")
        with urllib.request.urlopen(
            f"{base}/lol/match/v5/matches/by-puuid/{summoner['puuid']}/ids?count=3"
        ) as r:
            ids = json.load(r)
        assert ids == demo_server.fake_match_ids(summoner["puuid"])[:3]
        with urllib.request.urlopen(f"{base}/lol/match/v5/matches/{ids[0]}") as r:
            match = json.load(r)
        assert 900 <= match["info"]["gameDuration"] < 2700
        assert server.requests == 3
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018


def test_count_fds_excludes_the_servers_sockets() -> None:
    """Sockets accepted by the server do not count; the client's do."""
    import socket

    with demo_server.DemoServer(latency=0) as server:
        before = count_fds(server.port)
        client = socket.create_connection(("127.0.0.1", server.port))
        try:
            assert count_fds(server.port) == before + 1
        finally:
            client.close()
        assert count_fds(server.port) == before


def test_summarize_masks_addresses() -> None:
    """Messages that differ only by addresses or fds are grouped."""
    lines = summarize(["A <x at 0x1f> fd=12", "A <x at 0x2e> fd=13\nmore", "B"])
    assert lines == ["2 x A <x at ...> fd=...", "1 x B"]


class _Stream(io.StringIO):
    """A stream that signals its first write, a terminal or not."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.written = threading.Event()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def write(self, text: str) -> int:
        count = super().write(text)
        self.written.set()
        return count


def test_progress_line_after_the_delay_on_a_terminal() -> None:
    """On a terminal, once the delay has passed, a line names the mode and the calls done."""
    stream = _Stream(tty=True)
    progress = Progress(total=3, enabled=True, stream=stream, after=0.0)
    assert progress.enabled
    progress.mode = "managed"
    progress.advance()
    with progress:
        assert stream.written.wait(30)
    first = stream.getvalue().split("\r")[1]
    assert first.startswith("demo: managed: ")
    assert "1/3 calls done (all modes)" in first
    assert stream.getvalue().endswith("\r" + " " * 72 + "\r")  # erased at the end


def test_no_progress_line_for_short_disabled_or_captured_runs() -> None:
    """Nothing is written before the delay, when disabled, or when the stream is no terminal."""
    for enabled, after, tty in ((True, 3600.0, True), (False, 0.0, True), (True, 0.0, False)):
        stream = _Stream(tty=tty)
        with Progress(total=1, enabled=enabled, stream=stream, after=after) as progress:
            assert progress.enabled is (enabled and tty)
            progress.advance()
        assert stream.getvalue() == ""


def test_demo_needs_aiohttp_only() -> None:
    """The demo runs with every other optional library made unimportable."""
    code = (
        "import runpy, sys\n"
        "from importlib.abc import MetaPathFinder\n"
        "BLOCKED = {'httpx', 'redis', 'asyncpg', 'sqlalchemy', 'django', 'celery', 'dramatiq'}\n"
        "class Block(MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is blocked by this test')\n"
        "        return None\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['resourceloop', 'demo', '--threads', '2', '--summoners', '2', '--json',\n"
        "            '--no-progress']\n"
        "runpy.run_module('resourceloop', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_captured_output_has_no_progress_line() -> None:
    """A run long enough for the progress line, with stderr a pipe, prints nothing there."""
    # About 3.4 s: longer than the 2 s after which a terminal would show the line.
    result = _demo("--threads", "2", "--summoners", "16", "--latency", "60", "--modes", "managed")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "calls done" not in result.stdout
    assert result.stdout.startswith("resourceloop demo: 16 summoners x 5 matches per mode")


# -- the command line ------------------------------------------------------------------------------


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resourceloop", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_no_command_lists_the_commands() -> None:
    """``python -m resourceloop`` alone prints the help, which lists every command."""
    result = _command()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m resourceloop")
    assert "commands:" in result.stdout
    assert "demo" in result.stdout
    assert "--version" in result.stdout


def test_version() -> None:
    """``--version`` prints the package version."""
    import resourceloop

    result = _command("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"resourceloop {resourceloop.__version__} (Python ")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--matches", "21", "argument --matches: expected 1 to 20, got 21"),
        ("--matches", "0", "argument --matches: expected 1 to 20, got 0"),
        ("--summoners", "100001", "argument --summoners: expected 1 to 100000, got 100001"),
        ("--threads", "257", "argument --threads: expected 1 to 256, got 257"),
        ("--threads", "many", "argument --threads: expected a whole number, got 'many'"),
        ("--latency", "10001", "argument --latency: expected 0 to 10000 ms, got 10001"),
    ],
)
def test_bad_demo_option_prints_the_demos_usage(option: str, value: str, message: str) -> None:
    """A value out of range is reported with the demo's own usage line, status 2."""
    result = _command("demo", option, value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: python -m resourceloop demo ")
    assert result.stderr.endswith(f"python -m resourceloop demo: error: {message}\n")


def test_unknown_demo_option_prints_the_demos_usage() -> None:
    """An option the demo does not know is reported with the demo's usage; a top-level one
    with the top-level usage; both exit with status 2."""
    result = _command("demo", "--bogus")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: python -m resourceloop demo ")
    assert result.stderr.endswith(
        "python -m resourceloop demo: error: unrecognized arguments: --bogus\n"
    )
    top = _command("--bogus")
    assert top.returncode == 2
    assert top.stderr.startswith("usage: python -m resourceloop [-h]")
    assert top.stderr.endswith("python -m resourceloop: error: unrecognized arguments: --bogus\n")


# -- Ctrl-C --------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
@pytest.mark.parametrize("modes", ["managed,decorator,unmanaged,baseline", "baseline"])
def test_one_ctrl_c_stops_the_demo(modes: str) -> None:
    """One SIGINT mid-run stops 100,000 summoners at once, cleanly, with status 130.

    Each response waits 10 s (``--latency 10000``) and the signal is sent once the first call
    is running (the banner line says so), so stopping within seconds means the calls in
    flight were cancelled, not waited for.
    """
    # SIGINT as a terminal delivers it: a runner may have started us with it ignored (a shell's
    # background job), and a child inherits that; the demo must see the usual handler.
    start = (
        "import faulthandler, runpy, signal, sys; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "faulthandler.register(signal.SIGUSR1, all_threads=True); "
        "sys.argv = ['resourceloop', *sys.argv[1:]]; "
        "runpy.run_module('resourceloop', run_name='__main__', alter_sys=True)"
    )
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", start, "demo"),
            *("--summoners", "100000", "--latency", "10000", "--modes", modes),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the first call is running
        assert banner.startswith("resourceloop demo: 100000 summoners"), banner
        assert "(Ctrl-C stops it)" in banner
        explained = process.stdout.readline() + process.stdout.readline()
        assert "Pyot's example" in explained, explained
        assert "without resourceloop" in explained, explained
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # say where it is stuck: every thread's stack
            process.send_signal(signal.SIGUSR1)
            out, err = process.communicate(timeout=TIMEOUT)
            pytest.fail(f"still running 5 s after Ctrl-C; its threads then:\n{err}")
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:  # pragma: no cover - only when the demo ignores Ctrl-C
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert out == ""  # no report after an interrupted run
    assert err == (
        "resourceloop demo: interrupted (Ctrl-C); calls in flight cancelled, worker threads "
        "and server stopped, no report\n"
    )
    assert elapsed < 5.0  # a functional bound (it takes about 0.2 s), not a benchmark
