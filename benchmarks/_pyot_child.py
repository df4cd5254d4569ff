"""Pyot's unmanaged churn, run in a subprocess because it deadlocks.

Pyot's ``ResourceTemplate.acquire`` calls ``purge()`` on every 32nd acquisition while it holds
its own (non-reentrant) lock; ``purge()`` releases each closed loop through ``release()``,
which takes the same lock from a thread-pool thread. Once a closed loop is in the table, that
acquisition never returns. This module runs the churn in daemon threads, watches their progress,
and calls it a deadlock when nothing progresses for ``stall`` seconds. It prints one JSON
object and leaves with ``os._exit`` (the stuck pool threads would block a normal exit).

Usage: ``python -m benchmarks._pyot_child '{"threads": [1, 2], "loops": 100, ...}'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import warnings
from typing import Any


def _await_chain(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Names of the coroutines the loop's tasks are suspended in, outermost first."""
    chains: list[str] = []
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:  # the task set changed under us; the picture is still useful
        tasks = []
    for task in tasks:
        names: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and hasattr(coro, "cr_code"):
            names.append(coro.cr_code.co_name)
            coro = coro.cr_await
        chains.append(" > ".join(names))
    return chains


def churn(n_threads: int, total: int, n_templates: int, stall: float, pyot: Any) -> dict[str, Any]:
    from benchmarks._harness import close_resource, make_resource

    saved = list(pyot.resource_templates)
    templates = [pyot.ResourceTemplate(make_resource, close_resource) for _ in range(n_templates)]
    per_thread = max(1, total // n_threads)
    done = [0]
    lock = threading.Lock()
    errors: list[str] = []
    barrier = threading.Barrier(n_threads + 1)

    async def main() -> None:
        for template in templates:
            await template.acquire()

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                asyncio.run(main())
                with lock:
                    done[0] += 1
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = last_change = time.perf_counter()
    last = 0
    result: dict[str, Any] = {"threads": n_threads, "planned": per_thread * n_threads}
    while True:
        now = time.perf_counter()
        if not any(thread.is_alive() for thread in threads):
            result.update(deadlock=False, loops=done[0], seconds=now - start, errors=errors)
            break
        if done[0] != last:
            last, last_change = done[0], now
        elif now - last_change > stall:
            stuck: list[str] = []
            for template in templates:
                for loop in list(template._acquisitions):
                    if loop.is_running():
                        stuck.extend(_await_chain(loop))
            result.update(
                deadlock=True,
                loops=done[0],
                stall_seconds=stall,
                acquisitions=[len(t._acquisitions) for t in templates],
                closed_loops_held=sum(
                    loop.is_closed() for t in templates for loop in list(t._acquisitions)
                ),
                lock_held=[t._lock._lock.locked() for t in templates],
                stuck_in=sorted(set(stuck)),
                errors=errors,
            )
            break
        time.sleep(0.01)
    pyot.resource_templates[:] = saved
    return result


def main() -> None:
    params = json.loads(sys.argv[1])
    import pyot.core.resources as pyot

    warnings.simplefilter("ignore")  # after the import: Pyot installs its own filter

    results = [
        churn(n, params["loops"], params["templates"], params["stall"], pyot)
        for n in params["threads"]
    ]
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()
    os._exit(0)  # pool threads stuck on Pyot's lock would block a normal exit


if __name__ == "__main__":
    main()
