"""Tests for releases in pool children that end with ``os._exit`` (`resourceloop._portal_process`).

``multiprocessing`` and billiard children run their ``Process`` and then ``os._exit``:
``atexit`` never runs there, only ``multiprocessing.util`` finalizers (and, in billiard's pool
workers, not even those: its ``on_process_exit`` hook). Each case runs a real pool or process
in a fresh interpreter and counts, per child process, the resources acquired and released
(on their loop, gracefully) as reported by the children themselves.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from .servers import require

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import asyncio, os, sys
import multiprocessing
from resourceloop import ResourceTemplate
from resourceloop.sync import async_to_sync, release_at_process_end

def say(line):
    os.write(1, f"{line}\\n".encode())  # one write per line: children share the pipe

def make():
    say(f"acquire {os.getpid()}")
    return asyncio.get_running_loop()

def release(loop):
    how = "on-loop" if asyncio.get_running_loop() is loop else "elsewhere"
    say(f"release {os.getpid()} {how}")

def force(loop):
    say(f"forced {os.getpid()}")

TEMPLATE = ResourceTemplate(make, release, name="counted", force_release_func=force)

@async_to_sync(portal=True)
async def on_portal(n):
    await TEMPLATE.acquire()
    return n

async def acquire():
    await TEMPLATE.acquire()

LOOPS = []

def idle_loop(n):
    # A loop left unclosed and idle in the child: only the runtime's exit pass releases it.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(acquire())
    LOOPS.append(loop)
    return n

def on_exit(pid, exitcode):  # billiard's pool workers run no finalizers, only this hook
    release_at_process_end()

def main(kind, mode):
    task = on_portal if mode == "portal" else idle_loop
    if kind == "multiprocessing-pool":
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=2) as pool:
            say(f"results {sum(pool.map(task, range(8), chunksize=1))}")
            pool.close()
            pool.join()
    elif kind == "multiprocessing-process":
        process = multiprocessing.get_context("fork").Process(target=task, args=(1,))
        process.start()
        process.join()
    elif kind == "billiard-process":
        import billiard
        process = billiard.Process(target=task, args=(1,))
        process.start()
        process.join()
    elif kind == "billiard-pool":
        from billiard.pool import Pool
        pool = Pool(2, maxtasksperchild=2, on_process_exit=on_exit)
        say(f"results {sum(pool.map(task, range(8), chunksize=1))}")
        pool.close()
        pool.join()
    say("parent done")

main(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("mode", ["portal", "idle-loop"])
@pytest.mark.parametrize(
    "kind",
    ["multiprocessing-pool", "multiprocessing-process", "billiard-process", "billiard-pool"],
)
def test_pool_children_release_before_os_exit(kind: str, mode: str) -> None:
    """Every child releases what it acquired, on its loop, before it ends with ``os._exit``.

    Before, the default portal's close and the runtime's exit pass were ``atexit`` handlers
    only: 0 releases in every child.
    """
    if kind.startswith("billiard"):
        require("billiard")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), kind, mode],
        capture_output=True,
        text=True,
        timeout=120,  # a guard only: a healthy run takes a few seconds
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert "parent done" in lines, (lines, result.stderr)
    acquired = Counter(ln.split()[1] for ln in lines if ln.startswith("acquire "))
    released = Counter(ln.split()[1] for ln in lines if ln.startswith("release "))
    assert acquired, lines
    assert released == acquired, (lines, result.stderr)
    assert not [ln for ln in lines if not ln.endswith("on-loop") and ln.startswith("release")]
    assert not [ln for ln in lines if ln.startswith("forced")], lines
    if kind.endswith("pool"):
        assert "results 28" in lines  # sum(range(8))
        if mode == "portal":  # one portal per child, reused by its tasks (up to 2 each)
            assert set(acquired.values()) == {1}, lines
            assert 4 <= len(acquired) <= 8, lines
