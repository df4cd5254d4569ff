"""The daemon thread that finds closed, abandoned, left-behind and collected loops.

Guarantees
    * One pass at a time (``Reaper.pass_lock``): ``reap()`` and ``purge()`` called while the
      thread is mid-pass wait for that pass, so when they return the work is done.
    * A pass never runs a loop that is running, closes only a loop nothing but resourceloop
      refers to (once it has ended it), and runs an idle loop only under the loop's
      ``guard`` (the owner's ``close()``, ``run_forever()`` and ``run_until_complete()`` wait
      for it instead of failing).
    * A loop left unclosed by a thread that lives on (worker pools that run a new loop per
      task) is ended while it is still reachable, never by the garbage collector: once its
      thread has tracked a newer loop and it sits idle, a pass releases its resources on it,
      gracefully, stops tracking it and closes it (nobody else can), with one
      ``UnclosedLoopWarning`` per thread. A loop still referenced is left alone: its owner
      may run it again. (Left to the collector, the loop and its resources would form
      one unreachable cycle whose finalizers all run before anything can be rescued: a
      client's own "Unclosed client session" first.) So no pass needs a full collection.
    * A pass costs what changed since the last one, not a look at every tracked loop. The
      events are noticed when they happen: a thread's end (``Registry.ended``, from a
      sentinel in a ``threading.local`` that dies with the thread's state), a thread tracking
      a newer loop (``Registry.thread_events``; the newly tracked states themselves come from
      ``Registry.tracked_since``, newest end first), a loop collected (its weak reference's
      callback). A loop left behind that is still referenced is due again at its 2nd, 4th,
      8th... pass (``_due``), or at once in a ``reap()`` that finds its reference counts
      changed (``_look_again_where_references_changed``). Only a loop closed behind our
      back is found by looking: every pass looks at the loops without a working close hook
      (``_unhooked``), and every ``FULL_SCAN_EVERY``-th pass and every ``reap()`` at all of
      them, one ``is_closed()`` each. The loops of living threads that nothing happened to
      cost a pass nothing.
    * No regular pass runs a full collection. ``reap()`` collects the old generation only to
      end a loop whose thread ended and that still looks referenced after a young collection:
      once per such ``reap()``, never per loop, and not at all when no thread ended.
    * The thread cannot die of anything a pass runs: every exception, ``BaseException``
      included (a release function raising SystemExit), is logged and the thread carries on.
      ``stats().reaper_alive`` says whether it runs.
    * While nothing is tracked the thread blocks on a wake-up lock; it never polls.

Races it accepts
    A thread's end sentinel fires while ``is_alive()`` may still say True (the thread's state
    is cleared before it is marked done): its loops then wait for a later pass. A thread that
    tracks a loop only to have it closed before the next pass still counts as having moved on
    (``Registry.superseded``). A loop can close, or an idle loop be picked up again by its
    owner, between the check and the release. Resources are taken under the registry lock
    and settled exactly once; a loop that starts running elsewhere makes the graceful attempt
    end early, and the rest is released forcefully.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

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


def _references(state: LoopState) -> int:
    """The references the loop and its resources have now, summed (-1: the loop is gone).

    Only compared with itself (``Reaper._look_again_where_references_changed``): the
    references this function's own frame holds are the same at every call.
    """
    loop = state.loop_ref()
    if loop is None:
        return -1
    store = state.store
    # One C call over the values: no Python code runs, so no other thread changes the dict.
    return sys.getrefcount(loop) + (sum(map(sys.getrefcount, store.values())) if store else 0)


#: What ``_references_seen`` holds for a loop whose last look collected no garbage first: no
#: count equals it, so the next ``reap()`` looks again.
_UNSURE: Final = -2


def _is_open(state: LoopState) -> bool:
    """``state.phase is OPEN``, read afresh (a call in between may have ended the loop)."""
    return state.phase is OPEN


def _look(states: list[LoopState]) -> tuple[list[LoopState], list[LoopState]]:
    """The OPEN states among ``states`` whose loop is closed, and those whose loop is gone.

    One look at each, in one loop over them; no loop outlives the call.
    """
    closed: list[LoopState] = []
    gone: list[LoopState] = []
    for state in states:
        if state.phase is OPEN:
            loop = state.loop_ref()
            if loop is None:
                gone.append(state)
            elif loop.is_closed():
                closed.append(state)
    return closed, gone


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


#: Every this many passes the thread also looks at every tracked loop, not only the changed
#: ones: for a loop closed behind its close hook's back (``type(loop).close(loop)``, a
#: ``close`` replaced after ours), and a collected loop whose callback an interrupt cut short.
FULL_SCAN_EVERY: Final = 16


class Reaper:
    """Owns the reaper thread, the lock that serializes passes, and what the passes remember.

    A fork child and the test reset replace the whole object (``_runtime``). What a pass
    remembers is owned by ``pass_lock``: only passes touch it.
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
        self._reset_books()

    def _reset_books(self) -> None:
        """What the passes know about the tracked loops (all of it new: a registry reset)."""
        self._generation = registry.generation
        self._passes = 0
        #: The highest serial the passes have seen (``Registry.tracked_since``).
        self._seen = 0
        #: Per thread, a weak reference to the newest state of it the passes have seen:
        #: the one its next loop leaves behind. Dropped when the thread ends.
        self._newest: dict[threading.Thread, weakref.ReferenceType[LoopState]] = {}
        #: Loops no close hook watches: a pass looks whether each was closed.
        self._unhooked: set[LoopState] = set()
        #: Loops whose thread ended: a pass looks at each until it is ended (it may be running
        #: elsewhere, or its thread not quite gone).
        self._orphans: set[LoopState] = set()
        #: Loops left behind by a thread that lives on -> the checks made so far; each is due
        #: again at its 1st, 2nd, 4th, 8th... pass (``_due``, by pass number).
        self._behind: dict[LoopState, int] = {}
        self._due: dict[int, list[LoopState]] = {}
        #: Loops left behind -> how many references they and their resources had at their
        #: last look (``_references``): ``reap()`` looks again, out of turn, at each whose
        #: count changed since, so a loop the program has just dropped is ended by that call.
        self._references_seen: dict[LoopState, int] = {}

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- one pass -----------------------------------------------------------------------------

    def reap_once(self, *, thorough: bool = True) -> None:
        """Run one pass now, in this thread: closed, abandoned, left-behind, collected loops.

        ``thorough`` (``reap()``) also looks at every tracked loop for one closed behind its
        hook, and may collect the old generation for a loop whose thread ended (see
        ``_end_abandoned``); the thread's own passes do so every ``FULL_SCAN_EVERY`` passes,
        and never collect more than the young generation.
        """
        with self.pass_lock:
            self._pass_locked(
                thorough
            )  # a call, not a loop: see ``_registry``, "loops under the lock"

    def _pass_locked(self, thorough: bool) -> None:
        registry.count("reaper_passes")
        if self._generation != registry.generation:
            self._reset_books()
        self._passes += 1
        self._collected = 0
        full = thorough or self._passes % FULL_SCAN_EVERY == 0
        ended, moved = registry.thread_events()  # before the new states: see ``_learn``
        self._learn(registry.tracked_since(self._seen))
        self._moved_on(moved)
        if ended:
            self._ended(ended)
        gone = None
        if full:
            gone = self._full_scan(registry.tracked())
        elif not (_config._current or _config.current()).close_hook:
            self._unhooked_scan(registry.states())
        elif self._unhooked:
            self._unhooked_scan(list(self._unhooked))
        if self._orphans:
            for state in list(self._orphans):
                self._orphan(state, thorough)
        due = self._due.pop(self._passes, None)
        if due:
            for state in due:
                if state in self._behind and state not in self._orphans:
                    self._left(state, thorough)
        if thorough and self._references_seen:
            self._look_again_where_references_changed()
        for state, batch in registry.drain_collected(lost=full, among=gone):
            end_collected(state, batch)

    # -- what changed -------------------------------------------------------------------------

    def _learn(self, states: list[LoopState]) -> None:
        """Take in the loops tracked since the last pass, oldest first.

        A thread's ended event is drained before this, so a thread that ended has all its
        states here by the time ``_ended`` looks for them.
        """
        for state in states:
            self._seen = state.serial
            if state.phase is not OPEN:
                continue
            if state.hook != "close":  # maybe not yet installed: ``_unhooked_scan`` looks again
                self._unhooked.add(state)
            previous = self._newest.get(state.thread)
            self._newest[state.thread] = weakref.ref(state)
            if previous is not None:
                self._left_behind(previous())

    def _moved_on(self, threads: list[threading.Thread]) -> None:
        """Threads that tracked a newer loop: their newest loop known here is left behind.

        (The newer loop may be gone already, closed before this pass: ``_learn`` never saw it.)
        """
        for thread in threads:
            ref = self._newest.get(thread)
            state = ref() if ref is not None else None
            if state is not None and registry.superseded(state):
                del self._newest[thread]
                self._left_behind(state)

    def _left_behind(self, state: LoopState | None) -> None:
        if state is not None and state.phase is OPEN and state not in self._behind:
            self._behind[state] = 0
            self._due.setdefault(self._passes, []).append(state)  # checked in this pass

    def _ended(self, threads: list[threading.Thread]) -> None:
        """Threads that ended: each of their loops is an orphan until it is ended."""
        gone = set(threads)
        for thread in gone:
            ref = self._newest.pop(thread, None)
            state = ref() if ref is not None else None
            if state is not None and state.phase is OPEN:
                self._orphans.add(state)
        if self._behind:
            for state in [s for s in self._behind if s.thread in gone]:
                self._forget_behind(state)
                if state.phase is OPEN:
                    self._orphans.add(state)

    # -- the cases ----------------------------------------------------------------------------

    def _full_scan(self, states: list[LoopState]) -> list[LoopState]:
        """End the loops closed without their hook, whatever their hook; prune the books.

        Returns the states whose loop is gone, for ``drain_collected`` to look among (a
        collected loop whose callback an interrupt cut short).
        """
        closed, gone = _look(states)
        self._prune()
        for state in closed:
            self._closed(state)
        return gone

    def _unhooked_scan(self, states: list[LoopState]) -> None:
        """End the loops among ``states`` closed without their hook; keep ``_unhooked`` to
        the loops that still need a look (a close hook installed, and enabled, leaves it)."""
        unhooked = self._unhooked
        close_hook = (_config._current or _config.current()).close_hook
        for state in states:
            if state.phase is not OPEN or state.loop_ref() is None:
                unhooked.discard(state)  # ended, or collected (its callback hands it over)
            elif close_hook and state.hook == "close":
                unhooked.discard(state)  # installed after ``_learn`` saw it
        for state in _look(states)[0]:
            self._closed(state)

    def _closed(self, state: LoopState) -> None:
        loop = state.loop()
        self._unhooked.discard(state)
        why = "its loop was closed without running the close hook"
        end_loop(loop, state, why=why, run=False)

    def _prune(self) -> None:
        """Forget the ended loops the books still hold (a full pass: O(books), not per loop).

        ``_newest`` holds weak references only: it needs no pruning (its entry goes with the
        thread).
        """
        self._unhooked = {s for s in self._unhooked if s.phase is OPEN}
        if any(s.phase is not OPEN for s in self._behind):
            self._behind = {s: n for s, n in self._behind.items() if s.phase is OPEN}
            seen = self._references_seen
            self._references_seen = {s: n for s, n in seen.items() if s in self._behind}
            self._due = {
                n: kept
                for n, due in self._due.items()
                if (kept := [s for s in due if s.phase is OPEN])
            }

    def _orphan(self, state: LoopState, thorough: bool) -> None:
        """A loop whose thread ended: ended once it is idle and the thread is really gone."""
        loop = state.loop()
        if state.phase is not OPEN or loop is None:
            self._orphans.discard(state)  # ended, or collected (its callback hands it over)
        elif loop.is_closed():
            del loop
            self._orphans.discard(state)
            self._closed(state)
        elif loop.is_running() or state.thread.is_alive():
            pass  # run by another thread now, or its thread is still finishing: next pass
        else:
            del loop  # ``_left_behind`` must see only its own reference to it
            try:
                self._end_abandoned(state, thorough)
            finally:
                if not _is_open(state):  # ended (or ending), even if interrupted
                    self._orphans.discard(state)

    def _left(self, state: LoopState, thorough: bool, *, in_turn: bool = True) -> None:
        """A loop left behind, due for a look: ended if idle and nobody else refers to it.

        ``in_turn``: this is its scheduled look, which schedules the next one; a look out of
        turn (``_look_again_where_references_changed``) leaves the schedule as it is.
        """
        checks = self._behind[state] + (1 if in_turn else 0)
        self._behind[state] = checks
        loop = state.loop()
        if state.phase is not OPEN or loop is None:
            self._forget_behind(state)
            return
        if loop.is_closed():
            del loop
            self._forget_behind(state)
            self._closed(state)
            return
        running = loop.is_running()
        del loop
        if running or not self._end_left_behind(state, thorough):
            # A look without a collection (the thread's passes) may have seen garbage refer
            # to the loop: ``reap()``, which collects the young generation, looks again.
            self._references_seen[state] = _references(state) if thorough else _UNSURE
            if in_turn:
                # Due again at its 2nd, 4th, 8th... pass from the first: a loop its owner
                # keeps (to run again) stays reachable, and need not cost every pass.
                self._due.setdefault(self._passes + (1 << (checks - 1)), []).append(state)
        else:
            self._forget_behind(state)

    def _forget_behind(self, state: LoopState) -> None:
        self._behind.pop(state, None)
        self._references_seen.pop(state, None)

    def _look_again_where_references_changed(self) -> None:
        """``reap()``: look now at each loop left behind whose references changed since its
        last look, whatever its schedule.

        The schedule spaces the looks at a loop the program keeps further and further apart
        (each costs a reachability check, tens of microseconds); but dropping the last
        reference to the loop or to one of its resources changes a count, and this notices
        that for the price of a ``sys.getrefcount`` per loop and resource. (A reference lost
        only when the collector frees a cycle changes no count until then: such a loop waits
        for its turn.)
        """
        # Its keys are among ``_behind``'s (``_forget_behind``), none of them an orphan; a
        # release run by an earlier look may have called ``reap()``, which forgets some.
        for state, seen in list(self._references_seen.items()):
            if state in self._behind and _references(state) != seen:
                self._left(state, thorough=True, in_turn=False)

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
        is closed here rather than collected unclosed later ("unclosed event loop"). Bounded:
        a thread ends once, and only a loop still referred to after the young collection
        costs it, so a program pays one full collection per ``reap()`` that ends such loops
        (however many), and none in a ``reap()`` that finds no thread ended.
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

    def _end_left_behind(self, state: LoopState, thorough: bool) -> bool:
        """End a loop its thread left idle for a newer one, if nobody else can reach it.

        ``reap()`` may collect the young generation first. Ended, the loop is closed too:
        nobody else can ever run or close it. True if it was ended.
        """
        if not self._only_we_reach(state, collect_up_to=1 if thorough else 0):
            return False
        loop = state.loop()
        if loop is None:  # pragma: no cover - collected meanwhile
            return True
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
        return state.phase is not OPEN

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
