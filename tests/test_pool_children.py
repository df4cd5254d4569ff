"""Tests for releases in pool children that end with ``os._exit`` (`resourceloop._portal_process`).

``multiprocessing`` and billiard children run their ``Process`` and then ``os._exit``:
``atexit`` never runs there, only ``multiprocessing.util`` finalizers (and, in billiard's pool
workers, not even those: its ``on_process_exit`` hook). Each case runs a real pool or process
in a fresh interpreter and counts, per child process, the resources acquired and released
(on their loop, gracefully) as reported by the children themselves.
"""

from __future__ import annotations

import multiprocessing
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


#: A program that acquires only through ``resourceloop`` itself (never ``resourceloop.sync``,
#: unless asked to use the portal), in a file: spawn and forkserver children import their
#: task from the main module, which ``-c`` would not give them.
ANY_START_SCRIPT = """
import asyncio, os, sys
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from resourceloop import ResourceTemplate

def say(line):
    os.write(1, f"{line}\\n".encode())  # one write per line: children share the pipe

def make():
    say(f"acquire {os.getpid()}")
    return asyncio.get_running_loop()

def release(loop):
    how = "on-loop" if asyncio.get_running_loop() is loop else "elsewhere"
    sync = "with-sync" if "resourceloop.sync" in sys.modules else "without-sync"
    say(f"release {os.getpid()} {how} {sync}")

def force(loop):
    say(f"forced {os.getpid()}")

TEMPLATE = ResourceTemplate(make, release, name="counted", force_release_func=force)
LOOPS = []

async def acquire(n):
    await TEMPLATE.acquire()
    return n

def idle_loop(n):
    # A loop left unclosed and idle in the child: only the runtime's exit pass releases it.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(acquire(n))
    LOOPS.append(loop)
    return n

def on_portal(n):
    from resourceloop.sync import async_to_sync
    return async_to_sync(acquire, portal=True)(n)

def main(kind, method, mode):
    task = on_portal if mode == "portal" else idle_loop
    context = multiprocessing.get_context(None if method == "default" else method)
    say(f"method {context.get_start_method()}")
    if kind == "pool":
        pool = multiprocessing.Pool if method == "default" else context.Pool
        with pool(2, maxtasksperchild=2) as running:
            say(f"results {sum(running.map(task, range(8), chunksize=1))}")
            running.close()
            running.join()
    elif kind == "executor":
        options = {} if method == "default" else {"mp_context": context}
        with ProcessPoolExecutor(2, **options) as executor:
            say(f"results {sum(executor.map(task, range(8)))}")
    elif kind == "process":
        process = (multiprocessing if method == "default" else context).Process(
            target=task, args=(1,)
        )
        process.start()
        process.join()
    elif kind == "billiard-process":
        import billiard
        process = billiard.Process(target=task, args=(1,))
        process.start()
        process.join()
    say("parent done")

if __name__ == "__main__":
    main(*sys.argv[1:])
"""

START_METHODS = ["default", "fork", "forkserver", "spawn"]


@pytest.mark.parametrize(
    ("kind", "method", "mode"),
    [
        *(
            (kind, method, "idle-loop")
            for kind in ("pool", "executor", "process")
            for method in START_METHODS
        ),
        ("billiard-process", "default", "idle-loop"),
        *(
            (kind, method, "portal")
            for kind in ("pool", "executor")
            for method in ("default", "forkserver", "spawn")
        ),
    ],
)
def test_children_release_under_every_start_method(
    kind: str, method: str, mode: str, tmp_path: Path
) -> None:
    """Every resource a pool child acquires is released on its loop when the child ends.

    With the real ``multiprocessing.Pool``, ``ProcessPoolExecutor`` and ``Process`` under each
    start method (``default`` is forkserver on 3.14's Linux, fork before), and a billiard
    ``Process``; the program never imports ``resourceloop.sync`` unless it uses the portal. Fork
    and forkserver children end with ``os._exit`` after the finalizers: before, only
    ``resourceloop.sync`` registered one, so an idle loop's resource was never released there.
    """
    if kind.startswith("billiard"):
        require("billiard")
    if method not in ("default", *multiprocessing.get_all_start_methods()):
        pytest.skip(f"no {method} start method here")
    script = tmp_path / "children.py"
    script.write_text(textwrap.dedent(ANY_START_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), kind, method, mode],
        capture_output=True,
        text=True,
        timeout=120,  # a guard only: a healthy run takes a few seconds
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert "parent done" in lines, (lines, result.stderr)
    sync = "with-sync" if mode == "portal" else "without-sync"  # in the child, as it releases
    if method == "default" and sys.version_info >= (3, 14) and sys.platform == "linux":
        assert "method forkserver" in lines, lines  # what this test exists for on 3.14
    acquired = Counter(ln.split()[1] for ln in lines if ln.startswith("acquire "))
    released = Counter(ln.split()[1] for ln in lines if ln.startswith("release "))
    assert acquired, lines
    assert released == acquired, (lines, result.stderr)
    assert all(ln.split()[2:] == ["on-loop", sync] for ln in lines if ln.startswith("release ")), (
        lines
    )
    assert not [ln for ln in lines if ln.startswith("forced")], lines
    if kind in ("pool", "executor"):
        assert "results 28" in lines  # sum(range(8))
        if mode == "portal":  # one portal per child, reused by its tasks
            assert set(acquired.values()) == {1}, lines
