"""The only shared mutable state: which loops hold which resources, and who holds them now.

What it owns
    One ``Registry`` object owns every piece of state that threads share: the map from event
    loop to ``LoopState`` (keyed by each state's weak reference to its loop), the live
    templates, the batches in
    custody, the states of collected loops awaiting the reaper, the counters behind
    ``resourceloop.stats()``, the reaper's wake-up call, and the lock that guards them. It
    stores and hands back; it never creates, releases or closes anything. What a state, a
    store and a batch are, and who may refer to whom, is in ``_state``.

Custody
    A resource is in exactly one place at a time: a store (live on its loop) or a ``Batch``
    (taken for release, owned by whoever took it). ``take``/``take_all``/``begin_end`` move it
    from a store into a new batch under the lock; ``settle`` records each item's end
    (graceful, forced or failed) exactly once, under the lock, so two owners racing to settle
    the same item cannot both count it. Hence, at any moment::

        acquisitions == graceful_releases + forced_releases + release_failures + live

    where ``live`` counts stores and unsettled batch items. Each recording step counts and
    stores in one locked section whose only calls come before any change or after all of
    them, so an asynchronous exception (Ctrl-C, a signal handler raising) lands before or
    after it, never halfway (CPython 3.11+ delivers them only at calls and backward jumps).

The lock
    ``Registry._lock`` guards all of the above. It is held for a few dictionary operations at
    a time: never across an ``await``, never while calling user code (acquire and release
    functions, a user's loop class, warning filters), never while joining a thread.
    Garbage-collector callbacks never take it (see ``_state``).

Fork
    A fork child inherits the lock in whatever state a parent thread left it.
    ``forget_after_fork`` therefore replaces the lock before anything else, then replaces
    everything else whole; the parent's resources are parked, never released.

Races it accepts
    Reads of the loop map (``get``) take no lock: a dict lookup is atomic, and a caller that
    misses a state created a moment ago creates it under the lock, where the miss is checked
    again. A state can be discarded while a thread still holds it; its phase says so, and
    taking resources from it then yields nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import attrs

from ._locks import new_lock
from ._state import (
    ENDING,
    GONE,
    OPEN,
    READY_ATTR,
    SETTLED,
    STORE_KEY,
    Batch,
    Item,
    LoopState,
    RemoteWaiter,
    Spec,
    Store,
    Wakeup,
    _del_attr,
    _get_attr,
    _set_attr,
    clear_hot,
)

__all__ = ["Counters", "Registry", "registry"]

_dict_set: Final = dict.__setitem__
_new_store: Final = dict.__new__
_new_state: Final = object.__new__
_init_state: Final = LoopState.__init__
_dict_clear: Final = dict.clear


@attrs.frozen
class Counters:
    acquisitions: int = 0
    graceful_releases: int = 0
    forced_releases: int = 0
    release_failures: int = 0
    release_timeouts: int = 0
    reaper_passes: int = 0


class Registry:
    """Loop -> ``LoopState``, the live templates, custody and counters; see the module doc."""

    def __init__(self) -> None:
        self._lock = new_lock()
        #: Weak references to the templates, in creation order. Plain references rather than a
        #: ``WeakValueDictionary``, whose iteration runs a generator and an iteration guard in
        #: Python: managers list the templates on every entry. Dead ones are pruned under the
        #: lock by ``templates()``.
        self._templates: dict[int, weakref.ReferenceType[Any]] = {}
        self._template_serial = 0
        #: Everything fork children inherited from their parents: referenced, never released.
        self.forgotten: list[object] = []
        #: Release coroutines that ignored being closed (``_force.stop_release``).
        self.unstoppable: list[object] = []
        self.generation = 0
        self._start_empty()

    def _start_empty(self) -> None:
        """Every per-process field, new (templates are process-wide and stay)."""
        self.generation += 1
        #: Loop -> state, keyed by the state's own weak reference to its loop (``loop_ref``):
        #: a lookup's plain reference to a live loop equals it. The reference's callback
        #: (``_collected``, one per generation) removes the entry when the loop is collected,
        #: and hands the state to ``collected`` if it held resources: one weak reference and
        #: no closure per loop, where a ``WeakKeyDictionary`` added a reference of its own.
        #: Callbacks may change it at any allocation: copy it before iterating in Python.
        self._data: dict[weakref.ReferenceType[asyncio.AbstractEventLoop], LoopState] = {}
        self._batches: set[Batch] = set()
        self._counts = dict.fromkeys(attrs.fields_dict(Counters), 0)
        #: States of collected loops (``_collected``): the fast way there.
        self.collected: collections.deque[LoopState] = collections.deque()
        #: Every state not GONE, strongly: a collected loop's state stays here even if an
        #: interrupt (Ctrl-C) lost its weak reference's callback, for ``drain_collected``.
        self._tracked: set[LoopState] = set()
        self.wakeup = Wakeup()
        self._on_collected = functools.partial(_collected, self._data, self.collected, self.wakeup)
        self._last_thread: threading.Thread | None = None
        self._serial = 0
        #: Per thread, the serial of the newest loop it tracked (see ``superseded``).
        self._newest: weakref.WeakKeyDictionary[threading.Thread, int] = weakref.WeakKeyDictionary()
        self._newest_data: dict[Any, int] = self._newest.data  # type: ignore[attr-defined]
        #: Threads that tracked a newer loop since the reaper last looked (``thread_events``).
        self._moved_on: set[threading.Thread] = set()
        #: Threads that ended (``_thread_ended``); appended by a callback, drained by the reaper.
        self.ended: collections.deque[threading.Thread] = collections.deque()
        #: Per thread, the object whose death says the thread ended (``_watch_thread_end``),
        #: and the weak references that watch them, until they fire.
        self._thread_local = threading.local()
        self._thread_ends: set[weakref.ReferenceType[Any]] = set()
        self.multithreaded = False

    # -- fork and tests -------------------------------------------------------------------------

    def forget_after_fork(self) -> None:
        """Start empty in a fork child, keeping the parent's resources referenced but inert.

        Runs in ``os.register_at_fork(after_in_child=...)``, where only this thread exists: the
        lock is replaced first (a parent thread may have held it at fork time), and nothing
        here takes it. The parent's stores are taken off the loops the child inherited (so
        ``acquire`` there creates the child's own resource) and parked in ``forgotten`` with
        everything else the parent held: never released, never finalized here, since closing
        them could send data on the parent's sockets.
        """
        self._lock = new_lock()
        inherited = list(self._data.copy().items())
        self.forgotten.append(
            (inherited, list(self._batches), list(self.collected), list(self._tracked))
        )
        for key, _state in inherited:
            loop = key()
            if loop is None:
                continue
            try:
                hot = _get_attr(loop, READY_ATTR)
                _del_attr(loop, READY_ATTR)  # the hot path must miss in the child
            except (AttributeError, TypeError):
                continue
            self.forgotten.append(hot)  # and its store with it
        self._start_empty()

    def clear_for_tests(self) -> None:
        """Start empty, keeping the templates (the test suite's reset, not a fork's)."""
        with self._lock:
            self._start_empty()

    # -- templates --------------------------------------------------------------------------

    def add_template(self, template: Any) -> None:
        with self._lock:
            self._template_serial += 1
            self._templates[self._template_serial] = weakref.ref(template)

    def templates(self) -> list[Any]:
        """The live templates, in creation order (a snapshot)."""
        with self._lock:
            return _live_templates(self._templates)

    # -- loops ------------------------------------------------------------------------------

    def get(
        self,
        loop: asyncio.AbstractEventLoop,
        _ref: Callable[[Any], Any] = weakref.ref,
    ) -> LoopState | None:
        """The loop's state, or ``None``. Lock-free; see "Races it accepts"."""
        # A plain reference to a live loop equals the state's own (see ``_data``).
        return self._data.get(_ref(loop))

    def add(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: str | None = None,
        thread: threading.Thread | None = None,
    ) -> tuple[LoopState, bool]:
        """Return the loop's state, creating it (and its store) if needed; flag: created.

        ``origin`` names the loop in messages (``None``: its class, address and thread, made
        when first needed); ``thread`` is the calling thread, when the caller has it at hand.
        """
        if thread is None:
            thread = threading.current_thread()
        # The new state's reference, made first: it finds the loop's state if it has one.
        key = weakref.ref(loop, self._on_collected)
        with self._lock:
            state = self._data.get(key)
            if state is not None:
                return state, False
            self._serial += 1
            store = _new_store(Store)  # no ``Store.__init__``: ``hot`` is set just below
            store.hot = hot = {}
            # ``LoopState(...)`` without ``type.__call__`` and the slot wrapper of ``__init__``,
            # which pack the arguments into a tuple to call it: about 2,000 instructions.
            state = _new_state(LoopState)
            _init_state(state, key, None, thread, self._serial, self.generation, store, loop)
            if origin is not None:
                state._origin = origin
            # Update the thread's entry in place (its key, with the dict's removal callback,
            # stays); only a thread's first loop needs ``WeakKeyDictionary.__setitem__``.
            thread_key = weakref.ref(thread)
            if thread_key in self._newest_data:
                self._newest_data[thread_key] = self._serial
                self._moved_on.add(thread)  # its older loops may be left behind: the reaper
            else:
                self._watch_thread_end(thread)  # first: interrupted, it leaves nothing half-made
                self._newest[thread] = self._serial
            hot[STORE_KEY] = store
            try:
                _set_attr(loop, READY_ATTR, hot)
            except (AttributeError, TypeError):  # no instance __dict__: no hot path
                del hot[STORE_KEY]
            self._data[key] = state
            self._tracked.add(state)
            if thread is not self._last_thread and not self.multithreaded:
                self._last_thread = thread
                self.multithreaded = _any_other_thread(list(self._data.values()), thread)
            wakeup = self.wakeup
        wakeup.ring()
        return state, True

    def begin_end(self, state: LoopState, ender: Any = None) -> Batch | None:
        """OPEN -> ENDING: take every resource for the caller, who now owns the loop's end.

        ``None`` if the loop is ending or gone already: another trigger owns its end. Later
        acquisitions on the loop are refused. ``ender`` is the task that runs the end on the
        loop, if one does (``_lifecycle.end_on_loop``).
        """
        with self._lock:
            if state.phase is not OPEN:
                return None
            state.phase = ENDING
            state.ender = ender
            return self._batch_locked(state, state.store)

    def take_over(self, state: LoopState) -> Batch | None:
        """Hand an ENDING loop's remaining resources to a new owner (its ender was cut short)."""
        with self._lock:
            if state.phase is not ENDING:
                return None
            state.ender = None
            return self._batch_locked(state, state.store)

    def discard(self, state: LoopState) -> Batch | None:
        """-> GONE: stop tracking a loop. Idempotent.

        What its store still holds and no batch does (only an interrupted taking leaves that)
        comes back as a batch in custody, for the caller to force: nothing is dropped
        uncounted.
        """
        with self._lock:
            if state.phase is GONE:
                return None
            leftover = None
            store = state.store
            if store:
                items = _not_in_custody(state, store)
                if items:
                    leftover = Batch(state, items)
                    _batches_of(state).add(leftover)
                    self._batches.add(leftover)
            state.phase = GONE
            state.ender = None
            tracked = self._tracked
            tracked.discard(state)
            loop = state.loop_ref()
            # Its entry, found by the key itself even once the loop is gone (its hash is kept).
            data = self._data
            key = state.loop_ref
            if data.get(key) is state:
                del data[key]
            if not data:  # the last loop: give back the tables, which deleting never shrinks
                data.clear()
            if not tracked:
                tracked.clear()
            store, state.store = state.store, None
        if store is not None:
            # Break the loop -> hot dict -> store references: refcounting frees them.
            hot = store.hot
            hot.pop(STORE_KEY, None)
            if loop is not None:
                try:
                    if _get_attr(loop, READY_ATTR) is hot:
                        _del_attr(loop, READY_ATTR)
                except (AttributeError, TypeError):
                    pass
        return leftover

    def discard_if_idle(self, state: LoopState) -> bool:
        """-> GONE at once, if the loop is OPEN and holds nothing; True if it was discarded."""
        with self._lock:
            if state.phase is not OPEN or state.store or state.batches:
                return False
            state.phase = ENDING  # ours now: ``discard`` finishes the transition
        self.discard(state)
        return True

    def superseded(self, state: LoopState) -> bool:
        """True if the loop's thread has tracked a newer loop since: it may be done with it."""
        with self._lock:
            return self._newest.get(state.thread, 0) > state.serial

    def _watch_thread_end(self, thread: threading.Thread) -> None:
        """Have ``ended`` receive ``thread`` when it ends (its first loop; lock held).

        A sentinel in a ``threading.local``: CPython drops a thread's local values when it
        clears the thread's state, after its last Python code and before ``join()`` returns,
        and the sentinel's weak reference callback then hands the thread to the reaper (as
        the garbage-collector callbacks do: an append and a raw wake-up, no lock). The
        callback runs while ``is_alive()`` may still say True: the reaper checks that again.
        Only for the calling thread, whose local it sets.
        """
        if thread is not threading.current_thread():  # pragma: no cover - add's contract
            return
        sentinel = _ThreadEnd()
        ends = self._thread_ends
        ends.add(
            weakref.ref(
                sentinel, functools.partial(_thread_ended, ends, self.ended, self.wakeup, thread)
            )
        )
        self._thread_local.sentinel = sentinel

    def thread_events(self) -> tuple[list[threading.Thread], list[threading.Thread]]:
        """Threads that ended, and threads that tracked a newer loop, since the last call."""
        ended = _drain(self.ended)
        with self._lock:
            moved, self._moved_on = self._moved_on, set()
        return ended, list(moved)

    def tracked_since(self, serial: int) -> list[LoopState]:
        """The states still tracked whose serial is above ``serial``, oldest first.

        O(those states): the map keeps insertion order, which is serial order, and is read
        from its newest end.
        """
        with self._lock:
            return _newer_than(self._data, serial)

    def tracked(self) -> list[LoopState]:
        """Every state not GONE, collected loops' included, copied under the lock."""
        with self._lock:
            return list(self._tracked)

    def states(self) -> list[LoopState]:
        """Every tracked loop's state, copied under the lock (no reference to the loops)."""
        with self._lock:
            return list(self._data.values())

    def snapshot(self) -> list[tuple[asyncio.AbstractEventLoop, LoopState]]:
        """Every tracked loop and its state, copied under the lock."""
        with self._lock:
            return _live_items(self._data.copy())

    def drain_collected(
        self, *, lost: bool = True, among: list[LoopState] | None = None
    ) -> list[tuple[LoopState, Batch]]:
        """Loops collected with resources, each ENDING with what it held taken into a batch.

        Those their weak reference's callback handed over, and, if ``lost``, any whose
        callback an interrupt cut short (their loop is gone, their state still tracked): found
        by a scan of every tracked state, or only ``among`` the given ones (a caller that has
        scanned them already).
        """
        drained = []
        if lost:
            with self._lock:
                found = _untrack_lost(self._tracked, among)
            self.collected.extend(s for s in found if s.store and s not in self.collected)
        while True:
            try:
                state = self.collected.popleft()
            except IndexError:
                break
            if state.generation != self.generation:
                continue
            batch = self.begin_end(state)
            if batch is not None:
                drained.append((state, batch))
        return drained

    def idle(self) -> bool:
        """True when nothing is tracked, in custody or collected."""
        with self._lock:
            return not (self._tracked or self._batches or self.collected)

    def __len__(self) -> int:
        return len(self._data)

    def set_managed(self, state: LoopState, managed: bool) -> bool:
        """Mark or unmark a managed loop; False if it was already in the requested state."""
        with self._lock:
            if state.managed == managed:
                return False
            state.managed = managed
            return True

    def managed_loops(self) -> list[asyncio.AbstractEventLoop]:
        with self._lock:
            return _managed(self._data.copy())

    # -- custody ----------------------------------------------------------------------------

    def store(self, state: LoopState, spec: Spec, resource: Any) -> bool:
        """Record a created resource; False if the loop began ending meanwhile.

        Counted and stored in one step as far as an asynchronous exception can tell (see
        "Custody"): the dict insert that makes it visible is the last call made.
        """
        with self._lock:
            store = state.store
            if state.phase is not OPEN or store is None:
                return False
            self._counts["acquisitions"] += 1
            store.hot[spec] = resource
            _dict_set(store, spec, resource)  # ``store[spec] = resource``, one call fewer
            return True

    def recover_creation(self, state: LoopState, spec: Spec, resource: Any) -> Batch | None:
        """Book a created resource whose recording an exception interrupted, exactly once.

        Stored if the loop is still open (the interruption goes on to the caller; the
        resource is the loop's like any other); otherwise taken into a batch for the caller
        to force. ``None`` if it was recorded after all.
        """
        with self._lock:
            store = state.store
            if store is not None and store.get(spec) is resource:
                return None
            if _in_custody(state, resource):
                return None  # adopted already
            self._counts["acquisitions"] += 1
            if state.phase is OPEN and store is not None and spec not in store:
                store.hot[spec] = resource
                _dict_set(store, spec, resource)
                return None
            batch = Batch(state, [Item(spec, resource)])
            _batches_of(state).add(batch)
            self._batches.add(batch)
            return batch

    def adopt(self, state: LoopState, spec: Spec, resource: Any) -> Batch:
        """Count a resource created too late to store (its loop is ending) and take it."""
        with self._lock:
            self._counts["acquisitions"] += 1
            batch = Batch(state, [Item(spec, resource)])
            _batches_of(state).add(batch)
            self._batches.add(batch)
            return batch

    def _batch_locked(
        self, state: LoopState, store: Store | None, only: Spec | None = None
    ) -> Batch:
        # In custody first, out of the store last: an interrupt (Ctrl-C) arriving between the
        # two leaves a resource in both for a moment, never in neither. Settling is per item
        # and ``discard`` forces what a store still holds, so it still ends exactly once.
        if store is None or (only is not None and only not in store):
            return Batch(state, [])
        if only is None:
            items = [Item(spec, resource) for spec, resource in reversed(store.items())]
        else:
            items = [Item(only, store[only])]
        batch = Batch(state, items)
        if items:
            batches = _batches_of(state)  # a call, so before any change
            state.taking = batch  # no call before this: it says what the store still shows
            batches.add(batch)
            self._batches.add(batch)
            if only is None:
                _dict_clear(store)  # ``store.clear()``, without the Python-level call
                clear_hot(store.hot)
            else:
                store.pop(only)
            state.taking = None
        return batch

    def take(self, state: LoopState, spec: Spec) -> Batch:
        """Take one resource into a new batch (empty if the loop does not hold it)."""
        with self._lock:
            return self._batch_locked(state, state.store, spec)

    def take_all(self, state: LoopState) -> Batch:
        """Take every resource, newest first, leaving the loop open (a manager's exit)."""
        with self._lock:
            return self._batch_locked(state, state.store)

    def settle(self, batch: Batch, item: Item, outcome: str) -> bool:
        """Count ``item``'s end once; False if another owner settled it first."""
        with self._lock:
            if item.status == SETTLED:
                return False
            item.status = SETTLED
            self._counts[outcome] += 1
            if _all_settled(batch):
                _discard_batch(batch.state, batch)
                self._batches.discard(batch)
            return True

    def claim(self, batch: Batch, item: Item) -> bool:
        """Mark ``item`` settled without counting it yet; False if it was settled already.

        For forced releases: the claimant calls the force function, then ``count``s the
        outcome, so no other owner can call it a second time meanwhile.
        """
        with self._lock:
            if item.status == SETTLED:
                return False
            item.status = SETTLED
            if _all_settled(batch):
                _discard_batch(batch.state, batch)
                self._batches.discard(batch)
            return True

    def add_remote(self, state: LoopState, call: RemoteWaiter) -> None:
        """Record a cross-thread call waiting for the loop (``_lifecycle`` fails it at the end)."""
        with self._lock:
            remote = state.remote
            if not isinstance(remote, set):
                remote = state.remote = set()
            remote.add(call)

    def discard_remote(self, state: LoopState, call: RemoteWaiter) -> None:
        with self._lock:
            remote = state.remote
            if isinstance(remote, set):
                remote.discard(call)

    def pop_remote(self, state: LoopState) -> RemoteWaiter | None:
        """One cross-thread call still waiting for the loop, no longer recorded; or ``None``."""
        with self._lock:
            remote = state.remote
            return remote.pop() if isinstance(remote, set) and remote else None

    def batches_of(self, state: LoopState) -> list[Batch]:
        with self._lock:
            return list(state.batches)

    # -- counters ---------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> Counters:
        with self._lock:
            return Counters(**self._counts)

    # -- live views -------------------------------------------------------------------------

    def live_entries(self) -> list[tuple[Spec, LoopState]]:
        """Every live resource as (spec, its loop's state): stores and custody."""
        with self._lock:
            return _live_entries(self._tracked, self.collected, self._batches)

    def live_by_template(self) -> Mapping[str, int]:
        """Live resources per template name (same scope as ``live_entries``)."""
        return dict(collections.Counter(spec.name for spec, _ in self.live_entries()))

    def __repr__(self) -> str:
        with self._lock:
            loops = len(self._data)
            custody = _unsettled_count(self._batches)
            collected = len(self.collected)
        live = len(self.live_entries())
        return f"<Registry loops={loops} live={live} in_custody={custody} collected={collected}>"

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter([loop for loop, _ in self.snapshot()])


# -- loops under the lock ----------------------------------------------------------------------
# A ``with self._lock:`` body never loops itself (no for, while or comprehension) but calls one
# of these. CPython leaves some loop jumps out of the enclosing ``with``'s exception table
# (3.14's inlined ``all()``/``any()``, loops ending in an ``if``; gh-130279 on 3.13), and a
# jump back runs signal handlers: a Ctrl-C landing there would leave the lock held for ever.
# Raised in a function called from the body, it reaches the call, which the table covers.
# tests/test_locks.py checks the rule.


def _live_templates(refs: dict[int, weakref.ref[Any]]) -> list[Any]:
    live = [t for ref in refs.values() if (t := ref()) is not None]
    if len(live) != len(refs):
        for serial, ref in list(refs.items()):
            if ref() is None:
                del refs[serial]
    return live


def _batches_of(state: LoopState) -> set[Batch]:
    """``state.batches``, made a set on first use (lock held).

    Called before the change it serves, never between two: an interrupt landing on the call
    leaves at most an empty set where ``NO_ITEMS`` was, which means the same.
    """
    batches = state.batches
    if not isinstance(batches, set):
        batches = state.batches = set()
    return batches


def _discard_batch(state: LoopState, batch: Batch) -> None:
    batches = state.batches
    if isinstance(batches, set):
        batches.discard(batch)


def _newer_than(data: dict[Any, LoopState], serial: int) -> list[LoopState]:
    found: list[LoopState] = []
    try:
        for state in reversed(data.values()):
            if state.serial <= serial:
                break
            found.append(state)
    except RuntimeError:  # a collected loop's callback changed the map meanwhile: copy it
        return [state for state in list(data.values()) if state.serial > serial]
    found.reverse()
    return found


def _drain(queue: collections.deque[Any]) -> list[Any]:
    drained = []
    while queue:
        try:
            drained.append(queue.popleft())
        except IndexError:  # pragma: no cover - emptied by another drainer
            break
    return drained


class _ThreadEnd:
    """A thread's end sentinel (``Registry._watch_thread_end``): weakly referable, no more."""

    __slots__ = ("__weakref__",)


def _thread_ended(
    ends: set[weakref.ReferenceType[Any]],
    ended: collections.deque[threading.Thread],
    wakeup: Wakeup,
    thread: threading.Thread,
    ref: weakref.ReferenceType[Any],
) -> None:
    """A thread that tracked loops ended: hand it to the reaper.

    Runs in the ending thread as its state is cleared (or in a fork child, for the threads
    it did not inherit): only atomic operations and a raw wake-up, as in ``_collected``.
    """
    ends.discard(ref)  # its hash was taken when it was added, while the sentinel lived
    ended.append(thread)
    wakeup.ring()


def _any_other_thread(states: Iterable[LoopState], thread: threading.Thread) -> bool:
    return any(state.thread is not thread for state in states)


def _not_in_custody(state: LoopState, store: Store) -> list[Item]:
    """What ``store`` holds that no batch does (an interrupted taking leaves that)."""
    taken = {id(i.resource) for b in state.batches for i in b.items}
    if state.taking is not None:  # taken, then interrupted before the store emptied
        taken.update(id(i.resource) for i in state.taking.items)
    return [Item(k, v) for k, v in store.items() if id(v) not in taken]


def _untrack_lost(tracked: set[LoopState], among: list[LoopState] | None) -> list[LoopState]:
    """Open states whose loop is gone; those that held nothing are no longer tracked."""
    states = tracked if among is None else among
    lost = [s for s in states if s.phase is OPEN and s.loop_ref() is None and s in tracked]
    for state in lost:
        if not state.store:  # it held nothing: nothing to release
            tracked.discard(state)
    return lost


def _managed(data: Mapping[weakref.ReferenceType[Any], LoopState]) -> list[Any]:
    return [loop for ref, state in data.items() if state.managed and (loop := ref()) is not None]


def _live_items(
    data: Mapping[weakref.ReferenceType[asyncio.AbstractEventLoop], LoopState],
) -> list[tuple[asyncio.AbstractEventLoop, LoopState]]:
    return [(loop, state) for ref, state in data.items() if (loop := ref()) is not None]


def _collected(
    data: dict[Any, LoopState],
    collected: collections.deque[LoopState],
    wakeup: Wakeup,
    ref: weakref.ReferenceType[Any],
) -> None:
    """A tracked loop was collected: forget it, and hand its state to the reaper if it held
    resources.

    Its weak reference's callback: it runs on any thread at any allocation, possibly one that
    holds the registry lock, so it only removes an entry and appends (both atomic) and rings
    the wake-up (see ``_state``). One cut short by an interrupt (Ctrl-C) loses nothing: the
    reaper also finds tracked states whose loop is gone (``drain_collected``), and
    ``discard`` removes the entry.
    """
    state = data.pop(ref, None)
    if state is not None and state.store:  # it held resources, and nothing released them
        collected.append(state)
        wakeup.ring()


def _in_custody(state: LoopState, resource: Any) -> bool:
    return any(item.resource is resource for b in state.batches for item in b.items)


def _all_settled(batch: Batch) -> bool:
    # Releases go in order, so the last item is usually the last settled: a look at it
    # spares the scan (and its generator) for every other item.
    return batch.items[-1].status == SETTLED and all(item.status == SETTLED for item in batch.items)


def _unsettled_count(batches: Iterable[Batch]) -> int:
    return sum(len(b.unsettled()) for b in batches)


def _live_entries(
    tracked: set[LoopState], collected: Iterable[LoopState], batches: Iterable[Batch]
) -> list[tuple[Spec, LoopState]]:
    # Tracked loops first, in the order they were first seen; then collected ones.
    handed = [s for s in collected if s.phase is OPEN and s not in tracked]
    states = sorted(tracked, key=lambda state: state.serial) + handed
    found = [(spec, state) for state in states for spec in (state.store or ())]
    found += [
        (item.spec, batch.state)
        for batch in batches
        for item in batch.items
        if item.status != SETTLED
    ]
    return found


registry: Final = Registry()
