"""A loop's end: one transition, OPEN -> ENDING -> GONE, that every trigger asks for.

Triggers decide only *when* and *on which thread*: the close hook (``loop.close()``), the
shutdown wrapper and the async-generator watcher (on the loop, in ``asyncio.run``'s last
passes), the reaper (a loop closed without the hook, collected, abandoned by its thread, or
left idle by a thread that moved on to a newer loop), the exit handler and the test reset.
What happens then is written once, here:

1. ``Registry.begin_end`` moves the state from OPEN to ENDING under the registry lock and
   hands every resource to the caller, who now owns the loop's end. A second trigger finds
   the loop ENDING (or GONE) and does not release anything itself: no two releases of one
   loop ever run at once.
2. Graceful where the loop can still run: in the calling task (``end_on_loop``), by running
   the idle loop in this thread (``release_on_loop``), or in a helper thread when this thread
   runs a loop of its own. Each release is bounded by ``release_timeout`` plus ``grace``, so a
   loop's end is bounded by ``release_bound(n)`` whatever the release functions do.
3. Forced for whatever is left, for any reason: the loop can no longer run, the bound passed,
   or a ``BaseException`` (Ctrl-C, SystemExit, the ending coroutine being closed) arrived at any
   point. The interruption then reaches the caller at once.
4. GONE: cross-thread calls still waiting are failed, the state is untracked and the loop no
   longer carries its store. An acquisition on the same loop later starts a new state.

An ENDING whose owner was cut short (Ctrl-C out of ``asyncio.run``'s shutdown pass leaves its
task pending, and ``Runner.close`` then closes the loop) is taken over by the close hook:
``take_over`` stops the pending task, whose own ``finally`` forces what it had not released.
"""

from __future__ import annotations

import asyncio
import threading

from ._compat import get_running_loop_or_none
from ._errors import LoopClosedError
from ._force import abandon_task, force_batch
from ._loop_run import (
    release_in_task,
    release_on_loop,
    run_elsewhere,
    self_pipe_of,
    stop_waking_on_signals,
    wake_on_signals,
)
from ._registry import registry
from ._release import release_bound
from ._state import ENDING, OPEN, Batch, LoopState

__all__ = [
    "end_collected",
    "end_loop",
    "end_on_loop",
    "guard_bound",
    "take_over",
    "wait_for_guard",
]


def end_loop(
    loop: asyncio.AbstractEventLoop | None, state: LoopState, *, why: str, run: bool
) -> None:
    """End a loop from outside it: release on it if ``run`` and it can run, force the rest.

    ``run`` says the caller may run the loop (it is idle and nobody else will run it
    meanwhile: the owner closing it, or another thread under the loop's ``guard``).
    """
    if _end_if_idle(state):
        return
    batch: Batch | None = None
    token = _Token()
    try:
        batch = registry.begin_end(state, ender=token)
        if batch is None:
            if loop is not None and state.ender is not token:
                take_over(loop, state, why=why)
            return
        if run and loop is not None and not (loop.is_closed() or loop.is_running()):
            if get_running_loop_or_none() is None:
                release_on_loop(loop, state, batch, why=why)
            else:
                # Closed from a coroutine of another loop: this thread cannot run ``loop``,
                # a helper thread can, so the release is still graceful, on the loop.
                taken = batch
                run_elsewhere(
                    lambda: release_on_loop(loop, state, taken, why=why),
                    timeout=release_bound(len(batch.items) + len(state.pending)),
                )
    finally:
        if state.ender is token or batch is not None:  # ours, even if begin_end was cut short
            _finish(state, batch, why=why)


async def end_on_loop(state: LoopState, *, why: str) -> None:
    """End the running loop from one of its own tasks: release here, in this task.

    For ``asyncio.run``'s shutdown pass and the async-generator watcher. Whatever this task
    does not release (it is cancelled, interrupted, or its coroutine closed) is forced before
    the interruption goes on.
    """
    if _end_if_idle(state):
        return
    ender = asyncio.current_task()
    batch: Batch | None = None
    # The run is asyncio's (its last pass), in the main thread after it has put back the
    # program's SIGINT handler: a Ctrl-C must still wake its selector (``self_pipe_of``).
    wake_fd = self_pipe_of(asyncio.get_running_loop())
    try:
        wake_on_signals(wake_fd)
        batch = registry.begin_end(state, ender=ender)
        if batch is not None:
            await release_in_task(state, batch)
    finally:
        stop_waking_on_signals(wake_fd)
        if batch is not None or (ender is not None and state.ender is ender):
            _finish(state, batch, why=why)


def end_collected(state: LoopState, batch: Batch) -> None:
    """End a loop that was garbage-collected: its resources can only be forced."""
    _finish(state, batch, why="its loop was garbage-collected before anything released it")


def take_over(loop: asyncio.AbstractEventLoop, state: LoopState, *, why: str) -> None:
    """Finish an ENDING whose owner, a task on ``loop``, was cut short and cannot go on.

    Called by the close hook (the loop is not running: its task will never run again). The
    task is stopped here; its own ``finally`` forces what it had begun and untracks the loop.
    An ENDING owned by another thread is left to it: the close hook has waited for its guard.
    """
    ender = state.ender
    if ender is None or state.phase is not ENDING or ender.get_loop() is not loop:
        return  # owned by another thread (which the close hook waited for), or done
    if not ender.done():
        abandon_task(ender)  # its coroutine's finally: force and discard
    batch = registry.take_over(state)  # whatever it could not reach (it had not started)
    if batch is not None:
        _finish(state, batch, why=why)


def _end_if_idle(state: LoopState) -> bool:
    """Untrack an OPEN loop with nothing to release (a manager released it all), cheaply.

    No batch and no loop run. ``pending`` and ``remote`` change only on the loop's own
    thread, which is the caller's or does not run the loop now.
    """
    if state.phase is OPEN and not (state.store or state.pending or state.remote):
        return registry.discard_if_idle(state)
    return False


class _Token:
    """Who owns an ENDING that no task of the loop runs (``end_loop``)."""

    __slots__ = ()

    def get_loop(self) -> None:
        return None

    def done(self) -> bool:
        return True


def _finish(state: LoopState, batch: Batch | None, *, why: str) -> None:
    """Force what is left, fail the calls still waiting, and untrack: ENDING -> GONE.

    Every step runs whatever the one before it raised; the first ``BaseException`` then goes
    on to the caller.
    """
    try:
        if batch is not None:
            force_batch(batch, why=why)
        if state.batches:  # what late creations and cancelled manager exits left behind
            for leftover in registry.batches_of(state):
                force_batch(leftover, why=why)
    finally:
        try:
            _fail_remote_waiters(state)
        finally:
            remains = registry.discard(state)
            try:
                if remains is not None:  # an interrupted taking left it in the store
                    force_batch(remains, why=why)
            finally:
                if state.asyncgen_hook is not None:
                    _close_asyncgen_watcher(state)


def _fail_remote_waiters(state: LoopState) -> None:
    """Fail cross-thread acquisitions that the loop will never run now."""
    while (call := registry.pop_remote(state)) is not None:
        call.fail(LoopClosedError(f"{call.what}: {state.origin} closed before the call finished"))


def _close_asyncgen_watcher(state: LoopState) -> None:
    # Finish the watcher now, synchronously (the state is GONE first, so its finally does
    # nothing); otherwise the loop's finalizer would schedule aclose() on a loop that may
    # never run again, and Python would report a coroutine that was never awaited.
    watcher, state.asyncgen_hook = state.asyncgen_hook, None
    if watcher is None:
        return
    step = watcher.aclose()
    try:
        step.send(None)
    except (StopIteration, RuntimeError):
        pass


# -- the guard: another thread running the loop to end it ---------------------------------------


def wait_for_guard(state: LoopState) -> None:
    """Wait, bounded, while another thread (the reaper) runs this loop to end it."""
    guard = state.guard
    if not guard.locked():
        return
    if guard.acquire(timeout=min(guard_bound(state), threading.TIMEOUT_MAX)):
        guard.release()


def guard_bound(state: LoopState) -> float:
    """How long a run of ``state``'s loop to end it may take: ``release_bound`` of its share."""
    in_custody = sum(len(batch.items) for batch in list(state.batches)) + len(state.pending)
    store = state.store
    return release_bound(in_custody + (len(store) if store else 0))
