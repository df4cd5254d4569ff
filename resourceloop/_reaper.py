"""The daemon thread that finds closed, abandoned and collected loops.

Guarantees
    * One pass at a time (``_pass_lock``): ``reap()`` and ``purge()`` called while the thread is
      mid-pass wait for that pass, so when they return the work is done.
    * A pass never runs a loop that is running or whose owner thread is alive, never closes a
      loop anybody else can reach, and runs an abandoned loop only under the loop's ``guard``
      (the owner's ``close()`` and ``run_until_complete()`` wait for it instead of failing).
    * A loop left unclosed by a thread that lives on (worker pools) is not kept alive by us
      (its resources live on it, see ``_registry``). Once its thread has moved on to another
      loop it is a suspect; a pass with suspects runs the garbage collector (at most every
      ``COLLECT_INTERVAL`` seconds from the thread, always from ``reap()``), so that the ones
      nobody refers to are rescued, released on their loop and closed, with one warning per
      thread.
    * The thread cannot die of anything a pass runs: every exception, ``BaseException``
      included (a release function raising SystemExit), is logged and the thread carries on.
      ``stats().reaper_alive`` says whether it runs.
    * While nothing is tracked the thread blocks on a wake-up lock; it never polls.

Races it accepts
    A loop can close, or an abandoned loop be picked up by another thread, between the check
    and the release. Resources are taken under the registry lock and settled exactly once;
    a loop that starts running elsewhere makes the graceful attempt end early, and the rest is
    released forcefully.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from . import _config
from ._closehook import finish_closing, wait_for_guard
from ._compat import block_signals_in_this_thread
from ._force import force_batch, warn
from ._loop_run import release_on_loop
from ._registry import registry
from ._state import READY_ATTR, LoopState, wake_reaper, wakeup_lock
from .warnings import UnclosedLoopWarning

__all__ = ["COLLECT_INTERVAL", "Reaper", "pass_lock", "reap_once", "reset_after_fork"]

logger = logging.getLogger("resourceloop")

#: Least time between two garbage collections the reaper thread runs for suspects.
COLLECT_INTERVAL = 5.0

#: Serializes passes. Reentrant, so a release function that calls ``reap()`` cannot deadlock.
_pass_lock = threading.RLock()
_last_collect = float("-inf")
#: Threads already warned about unclosed loops (one warning per thread, not per loop). Weak, and
#: by thread object rather than ident: idents are reused once a thread ends.
_warned_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def pass_lock() -> threading.RLock:
    """The lock that serializes passes (replaced in a fork child, so look it up each time)."""
    return _pass_lock


def reset_after_fork() -> None:
    """Give a fork child a fresh pass lock: the parent's reaper may have held it mid-pass."""
    global _pass_lock, _last_collect
    _pass_lock = threading.RLock()
    _last_collect = float("-inf")
    _warned_threads.clear()


def reap_once(*, collect: bool = True) -> None:
    """Run one pass now, in this thread: closed, abandoned and collected loops.

    ``collect`` lets the pass run the garbage collector when suspects exist; the thread passes
    False until ``COLLECT_INTERVAL`` has gone by since its last collection.
    """
    global _last_collect
    with _pass_lock:
        registry.count("reaper_passes")
        suspects = _reap_tracked()
        if suspects and collect:
            _last_collect = time.monotonic()
            gc.collect()
        _reap_rescued()
        _reap_collected()


def collect_due() -> bool:
    return time.monotonic() - _last_collect >= COLLECT_INTERVAL


def _reap_tracked() -> int:
    """Closed and abandoned loops among the tracked ones; return the number of suspects."""
    suspects = 0
    for loop, state in registry.snapshot():
        if state.discarded:
            continue
        if loop.is_closed():
            batch = registry.take_all(state, closing=True)
            why = "its loop was closed without running the close hook"
            try:
                force_batch(batch, why=why)
            finally:
                finish_closing(loop, state, why=why)
        elif loop.is_running():
            continue
        elif state.thread.is_alive():
            if registry.superseded(state):
                registry.unpin(state, loop)  # collectable now, if nothing else refers to it
                suspects += not state.pinned
        else:
            _release_abandoned(loop, state)
    return suspects


def _reap_collected() -> None:
    """Force what pinned loops held when they were collected (the loop is gone)."""
    for _state, batch in registry.drain_collected():
        force_batch(batch, why="its loop was garbage-collected before anything released it")


def _release_abandoned(loop: asyncio.AbstractEventLoop, state: LoopState) -> None:
    """Run an idle loop whose thread ended, to release its resources on it, under its guard."""
    if not state.guard.acquire(blocking=False):
        return  # the exit handler is on it
    try:
        undo = _hold_run_forever(loop, state)
        try:
            if loop.is_running() or loop.is_closed():
                return  # its owner got there first; the next pass sees the new situation
            batch = registry.take_all(state, closing=True)
            why = "its thread ended and the loop could not run again"
            try:
                release_on_loop(loop, state, batch, why=why)
            finally:
                finish_closing(loop, state, why=why)
        finally:
            undo()
    finally:
        state.guard.release()


def _hold_run_forever(loop: asyncio.AbstractEventLoop, state: LoopState) -> Callable[[], None]:
    """Make the owner's ``run_forever``/``run_until_complete`` wait while we run the loop.

    Instance attributes, as for the close hook; calls from this thread pass straight through.
    uvloop's ``run_until_complete`` is a builtin that the instance cannot override: there the
    owner gets uvloop's "already running" error instead. Returns the undo.
    """
    try:
        attrs = vars(loop)
    except TypeError:
        return lambda: None
    names = [n for n in ("run_forever", "run_until_complete") if n not in attrs]
    me = threading.current_thread()
    installed: dict[str, Callable[..., Any]] = {}
    for name in names:
        installed[name] = _waiting(getattr(type(loop), name), loop, state, me)
    try:
        attrs.update(installed)
    except Exception:  # pragma: no cover - a loop class that refuses: no guard then
        return lambda: None

    def undo() -> None:
        for name, wrapper in installed.items():
            if attrs.get(name) is wrapper:
                del attrs[name]

    return undo


def _waiting(
    original: Callable[..., Any],
    loop: asyncio.AbstractEventLoop,
    state: LoopState,
    me: threading.Thread,
) -> Callable[..., Any]:
    def wait_then_run(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not me:
            wait_for_guard(state)
        return original(loop, *args, **kwargs)

    return wait_then_run


def _reap_rescued() -> None:
    """Release what collected loops still held, on the loop where it can run, then close it.

    A loop that was closed (without the close hook) is released forcefully, with a warning per
    resource, as on any closed loop. An unclosed one is released gracefully on it, forcefully
    only for what that leaves, quietly: if its thread lives on, one warning per thread says
    what to change.
    """
    for state, loop, batch in registry.drain_rescued():
        closed = loop is None or loop.is_closed()
        names = sorted({item.spec.name for item in batch.items})
        try:
            if closed:
                why = "its loop was closed without running the close hook, then garbage-collected"
                force_batch(batch, why=why)
            else:
                assert loop is not None
                why = "its event loop was left unclosed and garbage-collected"
                if not loop.is_running():
                    release_on_loop(loop, state, batch, why=why)
                force_batch(batch, why=why, quiet=True)
        finally:
            if loop is not None:
                _close_unreachable(loop)
            if not closed and state.thread.is_alive():
                # A thread that ended is the abandoned case, released as quietly as ever; one
                # that lives on keeps leaving loops behind: say so, once.
                _warn_unclosed(state, names)
        del loop


def _close_unreachable(loop: asyncio.AbstractEventLoop) -> None:
    """Close a collected loop we rescued: nobody else can reach it, and its __del__ has run.

    Through its class: the close hook on the instance no longer knows the loop (its weak
    reference died in the collection). The collector may have finalized the loop's self-pipe
    sockets in that same collection, and a selector loop's ``close()`` then fails on their
    closed fds before it closes the selector; the selector is closed directly then, so that
    its fd is freed now rather than whenever the loop is collected again.
    """
    try:
        vars(loop).pop(READY_ATTR, None)
    except TypeError:  # pragma: no cover - a loop without __dict__ has no store to rescue
        pass
    if loop.is_closed() or loop.is_running():
        return
    try:
        type(loop).close(loop)
    except Exception:
        logger.debug("closing a collected loop failed; closing its selector", exc_info=True)
        selector = getattr(loop, "_selector", None)
        if selector is not None:
            selector.close()
            loop._selector = None  # type: ignore[attr-defined]
        if isinstance(loop, asyncio.BaseEventLoop):
            asyncio.BaseEventLoop.close(loop)  # closed for good: nothing may run it again


def _warn_unclosed(state: LoopState, names: list[str]) -> None:
    if state.thread in _warned_threads:
        return
    _warned_threads.add(state.thread)
    warn(
        UnclosedLoopWarning,
        f"event loops created on thread {state.thread.name!r} were left unclosed and "
        f"garbage-collected while holding resources ({', '.join(map(repr, names))}); "
        "resourceloop released them. Close each loop when done with it (asyncio.run(), "
        "asyncio.Runner, or loop.close()), or reuse one loop per thread. "
        "This warning is shown once per thread.",
    )


class Reaper:
    """Owns the reaper thread; see the module docstring."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        #: True while ``_run`` runs: ``ensure_started`` (once per tracked loop) reads it
        #: instead of ``Thread.is_alive()``, three Python calls.
        self._running = False
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_started(self) -> None:
        if self._running or self._stop.is_set():
            return
        with self._start_lock:
            if self.alive or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="resourceloop-reaper", daemon=True
            )
            self._thread.start()

    def kick(self) -> None:
        """Run a pass now rather than at the end of the interval (settings changed)."""
        self._kick.set()
        wake_reaper()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self.kick()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(min(timeout, threading.TIMEOUT_MAX))

    def _run(self) -> None:
        block_signals_in_this_thread()
        self._running = True
        try:
            self._loop()
        finally:
            self._running = False

    def _loop(self) -> None:
        wakeup = wakeup_lock()
        while not self._stop.is_set():
            if registry.idle():
                wakeup.acquire()  # until a loop is tracked, a store rescued, or stop()
                continue
            interval = min(_config.current().reap_interval, threading.TIMEOUT_MAX)
            self._kick.wait(interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            self._pass()

    def _pass(self) -> None:
        try:
            reap_once(collect=collect_due())
        except BaseException:  # the thread must not die: log, and carry on
            logger.exception("resourceloop reaper pass failed; carrying on")

    def __repr__(self) -> str:
        return f"<Reaper alive={self.alive} stopping={self._stop.is_set()}>"
