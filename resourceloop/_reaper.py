"""The daemon thread that finds closed, abandoned, left-behind and collected loops.

Guarantees
    * One pass at a time (``Reaper.pass_lock``): ``reap()`` and ``purge()`` called while the
      thread is mid-pass wait for that pass, so when they return the work is done.
    * A pass never runs a loop that is running, never closes a loop, and runs an idle loop
      only under the loop's ``guard`` (the owner's ``close()``, ``run_forever()`` and
      ``run_until_complete()`` wait for it instead of failing).
    * A loop left unclosed by a thread that lives on (worker pools that run a new loop per
      task) is ended while it is still reachable, never by the garbage collector: once its
      thread has tracked a newer loop and it sits idle, a pass releases its resources on it,
      gracefully, and stops tracking it, with one ``UnclosedLoopWarning`` per thread. The
      loop itself stays open and usable: if its owner runs it again, the next acquisition
      creates new resources. (Left to the collector, the loop and its resources would form
      one unreachable cycle whose finalizers all run before anything can be rescued: a
      client's own "Unclosed client session" first.) So no pass needs ``gc.collect()``.
    * The thread cannot die of anything a pass runs: every exception, ``BaseException``
      included (a release function raising SystemExit), is logged and the thread carries on.
      ``stats().reaper_alive`` says whether it runs.
    * While nothing is tracked the thread blocks on a wake-up lock; it never polls.

Races it accepts
    A loop can close, or an idle loop be picked up again by its owner, between the check and
    the release. Resources are taken under the registry lock and settled exactly once; a loop
    that starts running elsewhere makes the graceful attempt end early, and the rest is
    released forcefully.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _config
from ._compat import block_signals_in_this_thread
from ._force import warn
from ._lifecycle import end_collected, end_loop, wait_for_guard
from ._locks import new_lock, new_rlock
from ._reach import counts_are_exact, only_we_reach
from ._registry import registry
from ._release import release_bound
from ._state import GONE, OPEN, LoopState
from .warnings import UnclosedLoopWarning

__all__ = ["Reaper"]

logger = logging.getLogger("resourceloop")


def _left_behind(state: LoopState) -> bool:
    """True if nothing but resourceloop refers to the loop any more (``_reach``).

    Always False where the interpreter does not count references as ``_reach`` needs
    (``counts_are_exact``): a loop left behind then stays tracked until its thread ends or
    it closes. The loop goes by its weak reference: no frame here may hold it.
    """
    if not counts_are_exact():
        return False
    return only_we_reach(state.loop_ref, [(state.store, 1)] if state.store is not None else [])


def _close_ours(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop nobody else can reach, as ``asyncio.Runner.close`` would: ours to end now.

    Its tasks are cancelled and its async generators (an SDK's stream left open) finalized,
    bounded by ``release_bound``, so that closing it leaves nothing pending to be reported.
    """
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(
            asyncio.wait_for(_wind_down(loop, tasks), timeout=release_bound(len(tasks)))
        )
    except Exception:  # what it left is the collector's now, as for any dropped loop
        logger.debug("winding down a loop left behind failed", exc_info=True)
    finally:
        loop.close()


async def _wind_down(loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task[Any]]) -> None:
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()


def _end_idle(loop: asyncio.AbstractEventLoop, state: LoopState, *, why: str) -> bool:
    """Run an idle loop here, under its guard, to end it gracefully; False if it was busy."""
    if not state.guard.acquire(blocking=False):
        return False  # the exit handler is on it
    try:
        undo = _hold_run_forever(loop, state)
        try:
            if loop.is_running() or loop.is_closed():
                return False  # its owner got there first; the next pass sees the new situation
            end_loop(loop, state, why=why, run=True)
            return True
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


class Reaper:
    """Owns the reaper thread, the lock that serializes passes, and what the passes remember.

    A fork child and the test reset replace the whole object (``_runtime``).
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        #: True while ``_run`` runs: ``ensure_started`` (once per tracked loop) reads it
        #: instead of ``Thread.is_alive()``, three Python calls.
        self._running = False
        self._start_lock = new_lock()
        self._stop = threading.Event()
        self._kick = threading.Event()
        #: Serializes passes. Reentrant, so a release function that calls ``reap()`` cannot
        #: deadlock.
        self.pass_lock = new_rlock()
        #: Threads already warned about unclosed loops (one warning per thread, not per loop).
        #: Weak, and by thread object rather than ident: idents are reused once a thread ends.
        self._warned_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        #: The oldest generation this pass has collected (``_only_we_reach``); 0 for none.
        self._collected = 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- one pass -----------------------------------------------------------------------------

    def reap_once(self, *, thorough: bool = True) -> None:
        """Run one pass now, in this thread: closed, abandoned, left-behind, collected loops.

        ``thorough`` checks every loop left behind by its thread; the thread's own passes
        check one that was still reachable less and less often (``_end_left_behind``).
        """
        with self.pass_lock:
            self._pass_locked(
                thorough
            )  # a call, not a loop: see ``_registry``, "loops under the lock"

    def _pass_locked(self, thorough: bool) -> None:
        registry.count("reaper_passes")
        self._collected = 0
        for state in registry.states():  # states only: see ``_left_behind``
            if state.phase is OPEN:
                self._reap(state, thorough)
        for state, batch in registry.drain_collected():
            end_collected(state, batch)

    def _reap(self, state: LoopState, thorough: bool) -> None:
        loop = state.loop()
        if loop is None:
            return  # collected: its weak reference's callback hands it over
        if loop.is_closed():
            why = "its loop was closed without running the close hook"
            end_loop(loop, state, why=why, run=False)
        elif loop.is_running():
            pass
        elif not state.thread.is_alive():
            del loop  # ``_left_behind`` must see only its own reference to it
            self._end_abandoned(state, thorough)
        elif registry.superseded(state):
            del loop
            self._end_left_behind(state, thorough)

    def _only_we_reach(self, state: LoopState, *, collect_up_to: int) -> bool:
        """``_left_behind``, looking again after collecting garbage if the first look says no.

        Garbage not yet collected (an exception's traceback, a finished task, a client's
        transports) may still refer to a loop's objects. Before each further look, a
        collection of generation 1, then 2, up to ``collect_up_to`` (0: none), each at most
        once per pass.
        """
        if _left_behind(state):
            return True
        for generation in range(self._collected + 1, collect_up_to + 1):
            self._collected = generation
            gc.collect(generation)
            if _left_behind(state):
                return True
        return False

    def _end_abandoned(self, state: LoopState, thorough: bool) -> None:
        """End an idle loop whose thread ended; closed too if nobody else can reach it.

        Its end is due now, whatever the answer: the last look before it may collect garbage.
        A young collection in any pass (the garbage of the thread's last task is young), and
        in ``reap()`` a full one if that was not enough, so that a loop only garbage refers to
        is closed here rather than collected unclosed later ("unclosed event loop"). A thread
        ends once: this costs a collection per ended thread with a loop left open, not per pass.
        """
        unreachable = self._only_we_reach(state, collect_up_to=2 if thorough else 1)
        loop = state.loop()
        if loop is None:  # pragma: no cover - collected meanwhile
            return
        why = "its thread ended and the loop could not run again"
        try:
            _end_idle(loop, state, why=why)
        finally:  # whatever interrupted the release: the loop is ours to close
            if unreachable and state.phase is GONE and not loop.is_closed():
                _close_ours(loop)

    def _end_left_behind(self, state: LoopState, thorough: bool) -> None:
        """End a loop its thread left idle for a newer one, if nobody else can reach it.

        The thread's passes check it at the 1st, 2nd, 4th, 8th... pass that finds it so: a
        loop its owner keeps (to run again) stays reachable, and need not cost every pass.
        ``reap()`` checks every time. Ended, the loop is closed too: nobody else can ever run
        or close it.
        """
        state.left_behind_checks += 1
        checks = state.left_behind_checks
        if not thorough and checks & (checks - 1):
            return
        if not self._only_we_reach(state, collect_up_to=1 if thorough else 0):
            return
        loop = state.loop()
        if loop is None:  # pragma: no cover - collected meanwhile
            return
        names = sorted(spec.name for spec in (state.store or ()))
        why = "its loop was left unclosed, and nothing else refers to it"
        try:
            _end_idle(loop, state, why=why)
        finally:  # whatever interrupted the release: the loop is ours to close
            if state.phase is GONE:
                if not loop.is_closed():
                    _close_ours(loop)
                if names:
                    self._warn_unclosed(state, names)

    def _warn_unclosed(self, state: LoopState, names: list[str]) -> None:
        if state.thread in self._warned_threads:
            return
        self._warned_threads.add(state.thread)
        warn(
            UnclosedLoopWarning,
            f"event loops created on thread {state.thread.name!r} were left unclosed while "
            f"holding resources ({', '.join(map(repr, names))}); once the thread had moved on "
            "to a newer loop and nothing else referred to the old one, resourceloop released "
            "them on it and closed it. "
            "Close each loop when done with it (asyncio.run(), asyncio.Runner, or "
            "loop.close()), or reuse one loop per thread. This warning is shown once per "
            "thread.",
        )

    # -- the thread ---------------------------------------------------------------------------

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
        registry.wakeup.ring()

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
        while not self._stop.is_set():
            if registry.idle():
                registry.wakeup.wait()  # until a loop is tracked, one collected, or stop()
                continue
            interval = min(_config.current().reap_interval, threading.TIMEOUT_MAX)
            self._kick.wait(interval)
            self._kick.clear()
            if self._stop.is_set():
                break
            self._pass()

    def _pass(self) -> None:
        try:
            self.reap_once(thorough=False)
        except BaseException:  # the thread must not die: log, and carry on
            logger.exception("resourceloop reaper pass failed; carrying on")

    def __repr__(self) -> str:
        return f"<Reaper alive={self.alive} stopping={self._stop.is_set()}>"
