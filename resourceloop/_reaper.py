"""The daemon thread that finds closed, abandoned and collected loops.

Guarantees
    * One pass at a time (``_pass_lock``): ``reap()`` and ``purge()`` called while the thread is
      mid-pass wait for that pass, so when they return the work is done.
    * A pass never runs a loop that is running, never closes a loop, and never touches a loop
      whose owner thread is alive unless that loop is closed.
    * An exception from user code (a release function, a warnings filter) is logged; the
      thread carries on. ``BaseException`` is not swallowed.
    * While nothing is tracked the thread blocks on ``registry.has_work``; it never polls.

Races it accepts
    A loop can close, or an abandoned loop can be picked up by another thread, between the
    check and the release. Resources are taken out of the registry under its lock, so each is
    still released exactly once; a loop that starts running elsewhere just makes the graceful
    attempt fail, and the rest is released forcefully.
"""

from __future__ import annotations

import logging
import threading

from . import _config
from ._closehook import finish_closing
from ._registry import registry
from ._release import release_forcefully, release_on_idle_loop

__all__ = ["Reaper", "pass_lock", "reap_once", "reset_after_fork"]

logger = logging.getLogger("resourceloop")

#: Serializes passes. Reentrant, so a release function that calls ``reap()`` cannot deadlock.
_pass_lock = threading.RLock()


def pass_lock() -> threading.RLock:
    """The lock that serializes passes (replaced in a fork child, so look it up each time)."""
    return _pass_lock


def reset_after_fork() -> None:
    """Give a fork child a fresh pass lock: the parent's reaper may have held it mid-pass."""
    global _pass_lock
    _pass_lock = threading.RLock()


def reap_once() -> None:
    """Run one pass now, in this thread: closed, abandoned and collected loops.

    Idle loops whose thread is still alive are left alone: their thread may run them again.
    """
    with _pass_lock:
        registry.count("reaper_passes")
        for state in registry.drain_collected():
            taken = registry.take_all(state, closing=True)
            release_forcefully(
                state, taken, why="its loop was garbage-collected before anything released it"
            )
        _reap_tracked()  # a function of its own: no loop stays bound here once it returns


def _reap_tracked() -> None:
    """Closed and abandoned loops among the tracked ones; call with ``_pass_lock`` held."""
    for loop, state in registry.snapshot():
        if state.discarded:
            continue
        if loop.is_closed():
            taken = registry.take_all(state, closing=True)
            release_forcefully(
                state, taken, why="its loop was closed without running the close hook"
            )
        elif loop.is_running() or state.thread.is_alive():
            continue
        else:
            taken = registry.take_all(state, closing=True)
            release_on_idle_loop(
                loop, state, taken, why="its thread ended and the loop could not run again"
            )
        finish_closing(loop, state)


class Reaper:
    """Owns the reaper thread; see the module docstring."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_started(self) -> None:
        if self.alive or self._stop.is_set():
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

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._kick.set()
        registry.has_work.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            registry.has_work.wait()
            if self._stop.is_set():
                break
            self._kick.wait(_config.current().reap_interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            try:
                reap_once()
            except Exception:
                logger.exception("resourceloop reaper pass failed; carrying on")
            registry.idle()
