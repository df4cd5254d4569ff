"""Releasing by running an idle loop in this thread: the close hook, the reaper, interpreter exit.

The loop is not running and nobody else will run it meanwhile (the caller makes sure of
that): ``release_on_loop`` runs it here, just long enough to release a batch gracefully on
it, bounded in time, and forces whatever is left, for any reason, before it returns or
raises. A thread that runs a loop of its own cannot run another one: ``run_elsewhere`` lends
it a short-lived helper thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _config
from ._force import force_batch
from ._registry import registry
from ._release import grace, release_batch
from ._state import HELD, Batch, LoopState

__all__ = ["release_on_loop", "run_elsewhere"]


# -- running an idle loop to release --------------------------------------------------------------


def release_on_loop(
    loop: asyncio.AbstractEventLoop, state: LoopState, batch: Batch, *, why: str
) -> None:
    """Release ``batch`` gracefully by running ``loop``, idle, in this thread; then settle all.

    Also waits for creations still in flight on the loop (their late resources are released
    on the loop by the creation itself). Handles a ``stop()`` scheduled before the run by
    running again, bounded in time. Whatever is not released when this ends, for any reason
    (the loop started running elsewhere, closed, the bound passed, a ``BaseException``), is
    forced before this returns or raises.

    The caller guarantees that nobody else runs the loop meanwhile and that this thread runs
    no loop of its own.
    """
    timeout = _config.current().release_timeout
    creations = list(state.pending.values()) if state.pending else []
    # Resources a cancelled manager exit left in custody are released here too.
    batches = [batch]
    if state.batches and (len(state.batches) > 1 or batch not in state.batches):
        batches += [b for b in registry.batches_of(state) if b is not batch]
    held = 0
    for each in batches:
        for item in each.items:
            if item.status == HELD:
                held += 1
    if not held and not creations:
        for leftover in batches:
            if leftover.items:
                force_batch(leftover, why=why)
        return
    deadline = time.monotonic() + (held + len(creations) + 1) * (timeout + grace(timeout))
    runner: asyncio.Future[Any] | None = None
    try:
        runner = loop.create_task(_release_then_wait(batches, creations, timeout))
        while not runner.done() and time.monotonic() < deadline:
            try:
                loop.run_until_complete(runner)
            except RuntimeError:
                if loop.is_closed() or loop.is_running():
                    break
                # "Event loop stopped before Future completed": a stop() was pending; run on.
            except Exception:
                break  # the runner's own failure: nothing of it is left to wait for
    finally:
        if runner is not None and not runner.done():
            runner.cancel()
            runner._log_destroy_pending = False  # type: ignore[attr-defined]
            coro = runner.get_coro()  # type: ignore[attr-defined]
            if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED":
                coro.close()  # interrupted before its first step: it never will run
        elif runner is not None and not runner.cancelled():
            runner.exception()  # raised here already (a KeyboardInterrupt): mark it seen
        for leftover in batches:
            force_batch(leftover, why=why)
        if state.batches:
            for leftover in registry.batches_of(state):
                force_batch(leftover, why=why)


async def _release_then_wait(
    batches: list[Batch], creations: list[asyncio.Future[Any]], timeout: float
) -> None:
    # Creations in flight cannot hand their resource to anyone now: cancel them, and wait
    # (bounded) for them to end; one that finishes all the same releases its late resource
    # on the loop itself (``ResourceTemplate._stored``), and that is waited for here too.
    for creation in creations:
        creation.cancel()
    for batch in batches:
        await release_batch(batch)
    if creations:
        await asyncio.wait(creations, timeout=timeout + grace(timeout))


def run_elsewhere(target: Callable[[], None], *, timeout: float) -> None:
    """Run ``target`` in a short-lived helper thread and wait for it at most ``timeout``.

    For a thread that runs a loop of its own and so cannot run another one.
    """
    helper = threading.Thread(target=target, name="resourceloop-release", daemon=True)
    helper.start()
    helper.join(min(timeout, threading.TIMEOUT_MAX))
