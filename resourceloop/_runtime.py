"""The runtime around the registry: tracking loops, settings, stats, fork and exit.

Nothing starts at import. The first acquisition on any loop calls ``track()``, which registers
the exit and fork handlers once (and, in a ``multiprocessing`` or billiard child, the exit pass
as a finalizer, since such a child ends with ``os._exit``) and starts the reaper thread on
demand.
"""

from __future__ import annotations

import asyncio
import atexit
import difflib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Final, Literal

import attrs

from . import _config
from ._closehook import install_asyncgen_hook, install_close_hook, install_shutdown_hook
from ._compat import get_running_loop_or_none
from ._force import warn
from ._lifecycle import end_collected, end_loop
from ._locks import new_lock
from ._reaper import Reaper
from ._registry import registry
from ._state import GONE, OPEN, LoopState
from .warnings import UngracefulLoopWarning

__all__ = [
    "LiveResource",
    "Stats",
    "configure",
    "live_resources",
    "reap",
    "stats",
    "track",
    "track_new",
    "unmanaged_acquisition",
]

logger = logging.getLogger("resourceloop")


class _Process:
    """What this process has set up once: its exit and fork handlers, and one debug line.

    Replaced whole in a fork child, with the reaper (``_after_fork_in_child``).
    """

    def __init__(self, *, handlers_installed: bool = False) -> None:
        self.lock = new_lock()
        #: ``atexit`` and ``os.register_at_fork`` handlers: registered once, inherited by forks.
        self.handlers_installed = handlers_installed
        #: This process's first ``track`` has run ``_set_up_process``: False again in a fork
        #: child, whose first tracked loop may be in a pool child that needs its finalizer.
        self.set_up = False
        self.multithreaded_logged = False


reaper = Reaper()
_process = _Process()


def track(loop: asyncio.AbstractEventLoop) -> LoopState:
    """The loop's state, created (with its hooks) on first use. Call on the loop's thread."""
    state = registry.get(loop)
    if state is not None and state.phase is not GONE:
        return state
    return track_new(loop)


def track_new(loop: asyncio.AbstractEventLoop) -> LoopState:
    """``track``, for a caller that has just found the loop untracked (or GONE)."""
    config = _config._current or _config.current()  # no call once loaded
    state, created = registry.add(loop, None, threading.current_thread())
    if not created:
        return state
    if config.close_hook:
        # Outside the registry lock: a user's loop class may run code in __setattr__.
        if install_close_hook(loop):
            state.hook = "close"
        elif install_asyncgen_hook(loop, state):
            state.hook = "asyncgen"
    if not _process.set_up:
        _set_up_process()
    reaper.ensure_started()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("tracking %s (hook: %s)", state.origin, state.hook)
    if registry.multithreaded and not _process.multithreaded_logged:
        _log_multithreaded()
    return state


def unmanaged_acquisition(loop: asyncio.AbstractEventLoop, state: LoopState, name: str) -> None:
    """A new resource outside any manager: see that something releases it gracefully.

    Warn, once per loop, when nothing will: no hook, or hooks disabled (before or after the
    loop was tracked). Otherwise also release at the executor shutdown, when that comes before
    the close (``install_shutdown_hook``: it is cheaper). ``name`` is the template being
    acquired, so the message says what is at risk.
    """
    if state.warned_ungraceful or state.managed:
        return
    close_hook = (_config._current or _config.current()).close_hook
    if state.hook != "none" and close_hook:
        if state.hook == "close" and not state.shutdown_hooked:
            state.shutdown_hooked = True
            install_shutdown_hook(loop)
        return
    if not close_hook:  # whether it was disabled before or after this loop was tracked
        why = "disabled by configure(close_hook=False) or RESOURCELOOP_CLOSE_HOOK=0"
    else:
        why = "its close method cannot be wrapped"
    warn(
        UngracefulLoopWarning,
        f"{state.origin} holds resources ({name!r} first) but has no close hook "
        f"({why}): "
        "they will be released forcefully after the loop closes. Wrap the work in "
        "`async with resource_manager():` to release them gracefully.",
        may_raise=True,  # the user's acquisition: -W error makes it fail, before creating
    )
    state.warned_ungraceful = True


def _log_multithreaded() -> None:
    if registry.multithreaded and not _process.multithreaded_logged:
        _process.multithreaded_logged = True
        logger.debug("multithreaded use detected: loops of several threads hold resources")


# -- settings, reaping, stats -----------------------------------------------------------------


def configure(
    *,
    reap_interval: float | None = None,
    release_timeout: float | None = None,
    close_hook: bool | None = None,
    **unknown: object,
) -> _config.Config:
    """Change the runtime settings; the ones not given keep their value.

    Each setting can also come from the environment, read on first use:
    ``RESOURCELOOP_REAP_INTERVAL``, ``RESOURCELOOP_RELEASE_TIMEOUT`` and
    ``RESOURCELOOP_CLOSE_HOOK=0``. Safe to call from any thread, at any time; a new interval
    takes effect at once, ``close_hook`` for loops that close from now on.

    Args:
        reap_interval: Seconds between reaper passes while loops are tracked (default 1.0).
        release_timeout: Seconds one release may take before it is abandoned and the resource
            released forcefully (default 10.0).
        close_hook: Install close hooks on loops so their resources are released gracefully
            just before they close (default True).

    Returns:
        The settings now in force.

    Raises:
        TypeError: A setting has the wrong type (a bool or a string for a number of seconds,
            anything but a bool for ``close_hook``), or is not a setting (a misspelt keyword:
            the error names the closest setting and all of them); no setting is changed.
        ValueError: A setting is out of range (zero, negative, not finite, or past
            ``threading.TIMEOUT_MAX``); no setting is changed.
        ConfigurationError: A ``RESOURCELOOP_*`` variable read on first use is invalid (a
            ``ValueError`` too); no setting is changed.

    .. versionadded:: 0.1.0
    """
    if unknown:
        raise _unknown_settings(unknown)
    error = _config.first_use_error()  # the first use: a bad variable's traceback ends here
    if error is not None:
        raise error from None
    config = _config.replace(
        reap_interval=reap_interval, release_timeout=release_timeout, close_hook=close_hook
    )
    reaper.kick()
    return config


_SETTINGS = ("reap_interval", "release_timeout", "close_hook")


def _unknown_settings(unknown: Mapping[str, object]) -> TypeError:
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, _SETTINGS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(
        f"configure() got {name!r}, which is not a setting{hint}; the settings are "
        f"{', '.join(_SETTINGS)}. No setting was changed."
    )


def reap() -> None:
    """Run one reaper pass now, synchronously, in the calling thread.

    Releases the resources of loops that were closed without the close hook (forcefully), of
    loops whose thread ended without closing them (gracefully where the loop can still run), of
    loops that a thread which lives on left unclosed and that nobody else refers to any more
    (gracefully, on the loop, which is then closed; one still referred to is checked again at
    the 2nd, 4th, 8th... pass after the first, or at once by a ``reap()`` that finds its
    reference counts changed since its last check), and of loops that were garbage-collected
    (forcefully). Where a loop due for that check, or one whose thread has just ended, still
    looks referenced, it may collect garbage first: the young generation, and the old one for
    a loop whose thread ended, at most once each per call. If the reaper thread is mid-pass, this
    waits for it first. Meant for tests and for programs that want the work done at a point of
    their choosing; from async code prefer ``await ResourceTemplate.purge()``, which does not
    block the loop.

    Safe to call from any thread.

    .. versionadded:: 0.1.0
    """
    reaper.reap_once()


@attrs.frozen
class Stats:
    """A snapshot of the runtime, returned by :func:`resourceloop.stats`.

    The books balance: every resource ever created is either still live or ended exactly one
    way, so whenever no release is midway::

        acquisitions == graceful_releases + forced_releases + release_failures
                        + sum(resources_live.values())

    (``release_timeouts`` is the part of ``forced_releases`` that overran its bound.)

    Attributes:
        loops_tracked: Loops with state in the registry (holding resources, or hooked).
        loops_managed: Loops inside a ``ResourceManager`` right now.
        resources_live: Live resources per template name: held by a loop, being released, or
            rescued from a collected loop and awaiting the reaper.
        acquisitions: Resources created since start (or since fork).
        graceful_releases: Releases that ran on their own loop and succeeded.
        forced_releases: Releases done without the loop (closed, collected, timed out).
        release_failures: Release (or force release) functions that raised (logged on
            ``resourceloop``).
        release_timeouts: Release functions abandoned after ``release_timeout``.
        reaper_passes: Reaper passes run, by the thread or by ``reap()``.
        multithreaded: Loops of more than one thread have held resources at the same time.
        reaper_alive: The reaper thread is running.

    .. versionadded:: 0.1.0
    """

    loops_tracked: int
    loops_managed: int
    resources_live: Mapping[str, int]
    acquisitions: int
    graceful_releases: int
    forced_releases: int
    release_failures: int
    release_timeouts: int
    reaper_passes: int
    multithreaded: bool
    reaper_alive: bool


def stats() -> Stats:
    """Return a consistent-enough snapshot of the runtime's counters.

    Each counter is read under the registry lock; the snapshot as a whole is not atomic with
    respect to releases running on other threads. Safe to call from any thread.

    .. versionadded:: 0.1.0
    """
    counters = registry.counters()
    return Stats(
        loops_tracked=len(registry),
        loops_managed=len(registry.managed_loops()),
        resources_live=registry.live_by_template(),
        multithreaded=registry.multithreaded,
        reaper_alive=reaper.alive,
        **attrs.asdict(counters),
    )


@attrs.frozen
class LiveResource:
    """One resource that some loop still holds, as listed by :func:`resourceloop.live_resources`.

    Attributes:
        template: The template's name.
        origin: The loop it belongs to, as in warnings and log lines: loop class, address and
            the thread that first acquired on it.
        loop_status: ``"running"``, ``"idle"`` (neither running nor closed), ``"closed"`` (the
            reaper will release it forcefully) or ``"collected"`` (likewise).
        managed: The loop is inside a ``ResourceManager`` right now.

    .. versionadded:: 0.1.0
    """

    template: str
    origin: str
    loop_status: Literal["running", "idle", "closed", "collected"]
    managed: bool


def live_resources() -> list[LiveResource]:
    """List every resource not yet released, with its template's name and its loop's origin.

    A snapshot (tracked loops in the order they were first seen, then collected ones); it
    holds no reference to any loop or resource. Meant for leak
    checks (the pytest plugin uses it) and debugging. Safe to call from any thread.

    .. versionadded:: 0.1.0
    """
    found: list[LiveResource] = []
    for spec, state in registry.live_entries():
        loop = state.loop()
        status: Literal["running", "idle", "closed", "collected"]
        if loop is None:
            status = "collected"
        elif loop.is_closed():
            status = "closed"
        elif loop.is_running():
            status = "running"
        else:
            status = "idle"
        del loop
        found.append(LiveResource(spec.name, state.origin, status, state.managed))
    return found


# -- process lifetime: fork and exit ------------------------------------------------------------


#: The ``multiprocessing.util``-like modules whose ``Finalize`` a pool child runs before its
#: ``os._exit``: the standard one, and billiard's (the same objects since billiard 4).
_POOL_UTILS: Final = ("multiprocessing.util", "billiard.util")

#: The exit priority of the runtime's pool-child finalizer: >= 0, so that it runs in the first
#: round of ``_exit_function`` (before the child's own children are joined), and below the
#: portals' (``_portal_process.register_process_end``, 10), so that portals close first while
#: the exit pass still finds their loops, as ``atexit`` orders them in a process that exits.
POOL_END_PRIORITY: Final = 5


def _set_up_process() -> None:
    """Once per process, at its first tracked loop: the exit and fork handlers, then, in a pool
    child, the exit pass as a finalizer (``_register_pool_end``).
    """
    process = _process
    with process.lock:
        if process.set_up:
            return
        if not process.handlers_installed:
            atexit.register(_at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)
            process.handlers_installed = True
        _register_pool_end()  # no lock of its own, no user code: only a dict insertion
        process.set_up = True


def _in_pool_child() -> bool:
    """Whether ``multiprocessing`` or billiard started this process (a ``Process`` bootstrap).

    Such a child runs its target and then ``os._exit``: ``atexit`` never runs there, only the
    finalizers (fork and forkserver; spawn's children exit normally, and run both). Looked up
    in ``sys.modules``: a process that never loaded either is no child of theirs.
    """
    mp = sys.modules.get("multiprocessing.process")
    if mp is not None and mp.parent_process() is not None:
        return True
    billiard = sys.modules.get("billiard.process")  # its children leave multiprocessing's alone
    return billiard is not None and billiard.current_process()._parent_pid is not None


def _register_pool_end() -> None:
    """In a pool child, register the exit pass as a ``Finalize`` of this process.

    Registered at the child's first tracked loop, so after its bootstrap cleared the
    finalizers that it inherited. Not in a process that ends with ``atexit``: there
    ``multiprocessing``'s own exit handler could run it before a portal closes. billiard's pool
    workers (Celery's prefork) run no finalizers at all: ``resourceloop.contrib.celery``, or
    ``release_at_process_end`` as the pool's ``on_process_exit``, covers them.
    """
    if not _in_pool_child():
        return
    seen: list[object] = []
    for name in _POOL_UTILS:
        util = sys.modules.get(name)
        if util is None or any(util.Finalize is each for each in seen):
            continue
        seen.append(util.Finalize)
        util.Finalize(None, _at_exit, exitpriority=POOL_END_PRIORITY)


def _after_fork_in_child() -> None:
    """Start the child empty: forget, never release, what the parent held. Must be cheap.

    Every lock a parent thread may have held at fork time is replaced before anything takes
    it: the registry's first (``forget_after_fork``), then the settings', then the reaper and
    the process record are new objects.
    """
    global reaper, _process
    registry.forget_after_fork()
    _config.reset_lock_after_fork()
    reaper = Reaper()  # the parent's thread does not exist here
    _process = _Process(handlers_installed=True)


def _at_exit() -> None:
    """Release what can be released at process exit; never touch a running loop.

    Also what a pool child's finalizer runs (it ends with ``os._exit``, so ``atexit`` never
    runs there).
    """
    try:
        current = reaper
        current.stop(timeout=1.0)
        timeout = min(_config.current().release_timeout, threading.TIMEOUT_MAX)
        lock = current.pass_lock
        if not lock.acquire(timeout=timeout):
            return  # a pass is stuck in user code: exiting beats waiting
        try:
            current.reap_once()
            if get_running_loop_or_none() is not None:
                return  # exit from inside a running loop: this thread cannot run another
            for loop, state in registry.snapshot():
                if state.phase is not OPEN or loop.is_running() or loop.is_closed():
                    continue
                if not state.guard.acquire(blocking=False):
                    continue
                try:
                    end_loop(loop, state, why="the interpreter is exiting", run=True)
                finally:
                    state.guard.release()
        finally:
            lock.release()
    except Exception:  # pragma: no cover - never print a traceback at exit
        logger.debug("exit handler failed", exc_info=True)


def _reset_for_tests() -> None:
    """Forget all state and stop the reaper; for the test suite only."""
    global reaper, _process
    reaper.stop(timeout=5.0)
    for loop, state in registry.snapshot():
        end_loop(loop, state, why="the test runtime was reset", run=False)
        del loop
    for state, batch in registry.drain_collected():
        end_collected(state, batch)
    registry.clear_for_tests()
    reaper = Reaper()
    _process = _Process(handlers_installed=_process.handlers_installed)
    _config.reset_for_tests()
