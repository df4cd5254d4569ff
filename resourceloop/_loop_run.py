"""Releasing by running an idle loop in this thread: the close hook, the reaper, interpreter exit.

The loop is not running and nobody else will run it meanwhile (the caller makes sure of
that): ``release_on_loop`` runs it here, just long enough to release a batch gracefully on
it, bounded in time, and forces whatever is left, for any reason, before it returns or
raises. A thread that runs a loop of its own cannot run another one: ``run_elsewhere`` lends
it a short-lived helper thread. Here the releases run in ``Runner`` tasks, which can be
abandoned; a loop's end that runs on the loop, in asyncio's task, uses ``release_in_task``.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _config
from ._force import Abandonable, abandon_task, force_batch
from ._registry import registry
from ._release import grace, release_batch, release_bound
from ._state import HELD, Batch, LoopState

__all__ = [
    "Runner",
    "release_in_task",
    "release_on_loop",
    "run_elsewhere",
    "self_pipe_of",
    "stop_waking_on_signals",
    "wake_on_signals",
]


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
    batches = _with_leftovers(state, batch)
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
    deadline = time.monotonic() + release_bound(held + len(creations))
    runners: list[Runner] = []  # a runner adds itself before its task exists (see ``Runner``)
    runner: Runner | None = None
    wake_fd = self_pipe_of(loop)
    try:
        wake_on_signals(wake_fd)
        while runner is None or (runner.stuck_on_one() and _held(batches)):
            runner = Runner(loop, batches, creations if runner is None else [], timeout, runners)
            # Each release is bounded (``_release``), so each run ends in time; a stop()
            # scheduled before this run ends it early, and it runs again, in the bound.
            while not runner.over() and time.monotonic() < deadline:
                try:
                    loop.run_until_complete(runner.stuck)
                except RuntimeError:
                    if loop.is_closed() or loop.is_running():
                        break
                    # "Event loop stopped before Future completed": a stop() was pending.
                except Exception:
                    break  # pragma: no cover - the future is ours and never fails
            if loop.is_closed() or loop.is_running() or time.monotonic() >= deadline:
                break
    finally:
        # Interrupted (Ctrl-C out of the loop's run), stopped for good or out of time: the
        # runners are stopped here, which forces what they had begun, and the rest is forced.
        stop_waking_on_signals(wake_fd)
        for started in runners:
            started.stop()
        for leftover in batches:
            force_batch(leftover, why=why)
        if state.batches:
            for leftover in registry.batches_of(state):
                force_batch(leftover, why=why)


def self_pipe_of(loop: asyncio.AbstractEventLoop) -> int:
    """The loop's self-pipe, if signals should wake it while it runs here (else -1).

    A signal that lands after the interpreter's last check and before the selector's wait
    begins is handled only when the wait ends: a Ctrl-C during a release would take effect up
    to ``release_timeout`` later. Python's wakeup fd closes that window (asyncio's
    ``add_signal_handler`` uses it the same way): the signal's byte lands in the loop's
    self-pipe, the wait ends, and the handler runs at once. Only in the main thread (the only
    one that runs handlers) and for loops with a self-pipe (asyncio's selector loops).
    """
    if threading.current_thread() is not threading.main_thread():
        return -1
    own_socket = getattr(loop, "_csock", None)
    return -1 if own_socket is None else int(own_socket.fileno())


def wake_on_signals(fd: int) -> None:
    """Set ``fd`` as the wakeup fd, unless it is -1 or the program has one of its own.

    Call it inside the ``try`` whose ``finally`` calls ``stop_waking_on_signals(fd)``: an
    interrupt may land after the fd is set and before this returns.
    """
    if fd == -1:
        return
    try:
        previous = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except (ValueError, OSError):  # a closed self-pipe, a blocking socket
        return
    if previous not in (-1, fd):  # the program's own: keep it
        signal.set_wakeup_fd(previous)


def stop_waking_on_signals(fd: int) -> None:
    """Unset the wakeup fd if it is ``fd`` (an interrupt may have come before it was set)."""
    if fd == -1:
        return
    current = signal.set_wakeup_fd(-1)
    if current not in (-1, fd):
        signal.set_wakeup_fd(current)


def _held(batches: list[Batch]) -> bool:
    return any(item.status == HELD for batch in batches for item in batch.items)


class Runner:
    """A task of ours that releases batches on the running loop, and can be abandoned.

    ``stuck`` is done once the task is over, or once a release in it outlived its grace
    without letting go of it (``_release._Deadline``): then nothing can be awaited from it,
    and its owner abandons it and starts another for whatever is left.
    """

    __slots__ = ("stuck", "task")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        batches: list[Batch],
        creations: list[asyncio.Future[Any]],
        timeout: float,
        runners: list[Runner],
    ) -> None:
        self.stuck: asyncio.Future[None] = loop.create_future()
        # In the owner's list before the task exists, so that an interrupt arriving as this
        # returns cannot leave the task pending with nobody to stop it.
        runners.append(self)
        work = Abandonable(_release_then_wait(batches, creations, timeout, self.stuck))
        try:
            self.task: asyncio.Task[None] = loop.create_task(work)
            self.task.add_done_callback(self._over)
        except BaseException:  # interrupted (Ctrl-C) before the caller could hold the task
            work.abandon()  # it never started: nothing to force, and no "never awaited"
            for task in asyncio.all_tasks(loop):
                if task.get_coro() is work:  # type: ignore[attr-defined, unused-ignore]
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
            raise

    def _over(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # a KeyboardInterrupt was raised out of the loop already: seen
        if not self.stuck.done():
            self.stuck.set_result(None)

    def over(self) -> bool:
        return self.stuck.done()

    def stuck_on_one(self) -> bool:
        """True if the task was given up on while it still waits for a release."""
        return self.stuck.done() and not self.task.done()

    def stop(self) -> None:
        """Abandon the task if it is not over: what it had begun is forced by its ``finally``.

        Synchronous all through: the loop may never run again (it is about to close), so
        nothing here may wait for a callback, and the task's own failure (a KeyboardInterrupt
        raised out of the loop's run) is marked retrieved here, not in ``_over``.
        """
        task = getattr(self, "task", None)
        if task is None:  # interrupted before it had one (``__init__`` cleaned up)
            return
        if not task.done():
            abandon_task(task)
        elif not task.cancelled():
            task.exception()
        if not self.stuck.done() and not task.get_loop().is_closed():
            self.stuck.cancel()


def release_in_task(state: LoopState, batch: Batch) -> Awaitable[Any]:
    """Release ``batch`` (and leftovers) in the calling task, on the running loop.

    For a loop's end that runs on the loop (``_lifecycle.end_on_loop``), in a task that is
    not ours to abandon (``asyncio.run``'s last pass): each release lets go of the task at
    its bound (``release_batch(relay=True)``), so the task goes on to the next one and the
    loop's end stays bounded, with no task of ours to run the releases in. The awaitable is
    ``release_batch``'s own when there is nothing else to wait for (one coroutine fewer).
    """
    if not state.pending and (len(state.batches) == 1 and batch in state.batches):
        return release_batch(batch, relay=True)
    return _release_then_wait(
        _with_leftovers(state, batch),
        list(state.pending.values()) if state.pending else [],
        (_config._current or _config.current()).release_timeout,
        None,
    )


def _with_leftovers(state: LoopState, batch: Batch) -> list[Batch]:
    """``batch``, and what cancelled manager exits left in custody on the loop's state."""
    batches = [batch]
    if state.batches and (len(state.batches) > 1 or batch not in state.batches):
        batches += [b for b in registry.batches_of(state) if b is not batch]
    return batches


async def _release_then_wait(
    batches: list[Batch],
    creations: list[asyncio.Future[Any]],
    timeout: float,
    stuck: asyncio.Future[None] | None,
) -> None:
    # Creations in flight cannot hand their resource to anyone now: cancel them, and wait
    # (bounded) for them to end; one that finishes all the same releases its late resource
    # on the loop itself (``ResourceTemplate._release_late``), and that is waited for here too.
    for creation in creations:
        creation.cancel()
    for batch in batches:
        await release_batch(batch, stuck, relay=stuck is None)
    if creations:
        await asyncio.wait(creations, timeout=timeout + grace(timeout))


def run_elsewhere(target: Callable[[], None], *, timeout: float) -> None:
    """Run ``target`` in a short-lived helper thread and wait for it at most ``timeout``.

    For a thread that runs a loop of its own and so cannot run another one.
    """
    helper = threading.Thread(target=target, name="resourceloop-release", daemon=True)
    helper.start()
    helper.join(min(timeout, threading.TIMEOUT_MAX))
