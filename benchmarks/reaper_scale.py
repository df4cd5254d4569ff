"""Reaper scale (issue 21): pass time per tracked loop, ``reap()`` time, bytes per tracked loop.

    RESOURCELOOP_REAP_INTERVAL=3600 PYTHONPATH=TREE python benchmarks/reaper_scale.py [N ...]

``TREE`` is the checkout whose ``resourceloop`` is measured (default sizes: 100 1000 5000):
run it for two trees in turn, on one machine, for a before/after comparison.
The reaper thread sleeps (an hour's interval): every pass here is driven by this script.

Scenarios, each with N tracked loops holding one resource:
  running  N threads, each parked inside its own running loop (asyncio.run)
  idle     N living threads, each parked after run_until_complete: its newest loop, idle
  behind   one living thread left N idle loops behind (superseded), the program keeps them
For each: the thread's pass (reap_once(thorough=False)), median of 16, per tracked loop;
reap(), median of 9; in CPU time of the calling thread (``time.thread_time``), so that other
processes' load does not count. Then tracemalloc: bytes per tracked loop under resourceloop's frames
while tracked, and after close + one reap().
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import resourceloop
from resourceloop import _runtime


async def _make() -> object:
    return object()


T = resourceloop.ResourceTemplate(_make, name="bench")


def _timed(fn: Callable[[], None], repeat: int) -> list[float]:
    """CPU seconds of this thread per call: the 2 shared cores' load does not count."""
    out = []
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        out.append(time.thread_time() - start)
    return out


def _measure(n: int, label: str) -> None:
    tracked = resourceloop.stats().loops_tracked
    assert tracked >= n, (tracked, n)
    thread_pass = _timed(lambda: _runtime.reaper.reap_once(thorough=False), 16)
    reaps = _timed(resourceloop.reap, 9)
    tp = statistics.median(thread_pass)
    first = thread_pass[0]
    rp = statistics.median(reaps)
    print(
        f"{label:8} n={n:5}  thread pass: median {tp * 1e3:8.3f} ms"
        f" ({tp / tracked * 1e6:6.3f} us/loop; first {first * 1e3:8.3f} ms)"
        f"   reap(): median {rp * 1e3:8.3f} ms ({rp / tracked * 1e6:6.3f} us/loop)",
        flush=True,
    )


def _threads(n: int, label: str, *, running: bool) -> None:
    parked = threading.Barrier(n + 1)
    go = threading.Event()

    async def park() -> None:
        await T.acquire()
        parked.wait()
        go.wait()

    def worker() -> None:
        if running:
            asyncio.run(park())
        else:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(T.acquire())
            parked.wait()
            go.wait()
            loop.close()

    old = threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        parked.wait(timeout=600)
    finally:
        threading.stack_size(old)
    try:
        _measure(n, label)
    finally:
        go.set()
        for t in threads:
            t.join()
    resourceloop.reap()


def _behind(n: int) -> None:
    loops = []
    for _ in range(n):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(T.acquire())
        loops.append(loop)
    try:
        _measure(n, "behind")
    finally:
        for loop in loops:
            loop.close()
    resourceloop.reap()


def _ours(snapshot: tracemalloc.Snapshot) -> int:
    filt = tracemalloc.Filter(True, "*/resourceloop/*")
    return sum(s.size for s in snapshot.filter_traces([filt]).statistics("filename"))


def _memory(n: int) -> None:
    warm = asyncio.new_event_loop()
    warm.run_until_complete(T.acquire())
    warm.close()
    resourceloop.reap()
    gc.collect()
    tracemalloc.start(1)
    base = _ours(tracemalloc.take_snapshot())
    loops = []
    for _ in range(n):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(T.acquire())
        loops.append(loop)
    resourceloop.reap()  # the reaper's own books about them count too
    gc.collect()
    held = _ours(tracemalloc.take_snapshot())
    for loop in loops:
        loop.close()
    resourceloop.reap()
    del loops, loop
    gc.collect()
    after = _ours(tracemalloc.take_snapshot())
    tracemalloc.stop()
    print(
        f"memory   n={n:5}  {(held - base) / n:7.1f} B per tracked loop while tracked;"
        f" {(after - base) / n:6.2f} B per loop after close + reap ({after - base} B in all)"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 5000]
    print(sys.version.split()[0], resourceloop.__file__)
    for n in sizes:
        _threads(n, "running", running=True)
        _threads(n, "idle", running=False)
        _behind(n)
    _memory(1000)


if __name__ == "__main__":
    main()
