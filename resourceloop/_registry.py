"""The only shared mutable state: which loops hold which resources, and who holds them now.

What it owns
    ``Registry._states``, a ``WeakKeyDictionary`` from event loop to ``LoopState``; the live
    templates; the batches in custody; resources rescued from collected loops; and the
    counters behind ``resourceloop.stats()``. It stores and hands back; it never creates,
    releases or closes anything. What a state, a store and a batch are, and who may refer to
    whom, is in ``_state``.

Custody
    A resource is in exactly one place at a time: a store (live on its loop), a ``Batch``
    (taken for release, owned by whoever took it), or ``_rescued``. ``take``/``take_all``
    move it from a store into a new batch under the lock; ``settle`` records each item's end
    (graceful, forced or failed) exactly once, under the lock, so two owners racing to settle
    the same item cannot both count it. Hence, at any moment::

        acquisitions == graceful_releases + forced_releases + release_failures + live

    where ``live`` counts stores, unsettled batch items and rescued resources.

The lock
    ``Registry._lock`` guards all of the above. It is held for a few dictionary operations at
    a time: never across an ``await``, never while calling user code (acquire and release
    functions, a user's loop class, warning filters), never while joining a thread.

    Garbage-collector callbacks never take it (see ``_state``).

Races it accepts
    Reads of ``_states`` (``get``) take no lock: a dict lookup is atomic, and a caller that
    misses a state created a moment ago creates it under the lock, where the miss is checked
    again. A state can be discarded while a thread still holds it; its ``discarded`` flag says
    so, and taking resources from it then yields nothing.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from ._ledger import Counters, Ledger
from ._state import (
    READY_ATTR,
    SETTLED,
    STORE_KEY,
    Batch,
    LoopState,
    Spec,
    Store,
    _collected,
    _collected_callback,
    _del_attr,
    _dummy_ref,
    _generation,
    _get_attr,
    _rescued,
    _set_attr,
    _wakeup,
    carried_store,
)

__all__ = ["Counters", "Registry", "registry"]


class Registry(Ledger):
    """Loop -> ``LoopState``, the live templates, and (``Ledger``) custody and counters."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        _generation[0] += 1
        self._reset_ledger()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = (
            weakref.WeakKeyDictionary()
        )
        #: The weak-keyed dict's own ``{weakref(loop): state}``, for lock-free reads.
        self._data: dict[Any, LoopState] = self._states.data  # type: ignore[attr-defined]
        #: Weak references to the templates, in creation order. Plain references rather than a
        #: ``WeakValueDictionary``, whose iteration runs a generator and an iteration guard in
        #: Python: managers list the templates on every entry. Dead ones are pruned under the
        #: lock by ``templates()``.
        self._templates: dict[int, weakref.ReferenceType[Any]] = {}
        self._template_serial = 0
        self._last_thread: threading.Thread | None = None
        self._serial = 0
        #: Per thread, the serial of the newest loop it tracked (see ``superseded``).
        self._newest: weakref.WeakKeyDictionary[threading.Thread, int] = weakref.WeakKeyDictionary()
        self._newest_data: dict[Any, int] = self._newest.data  # type: ignore[attr-defined]
        self.multithreaded = False
        self.pid = os.getpid()

    # -- fork -------------------------------------------------------------------------------

    def forget_after_fork(self) -> None:
        """Start empty in a fork child, keeping the parent's resources referenced but inert.

        Runs in ``os.register_at_fork(after_in_child=...)``. The parent's stores are taken off
        the loops the child inherited (so ``acquire`` there creates the child's own resource)
        and parked in ``_forgotten`` with everything else the parent held: never released,
        never finalized here, since closing them could send data on the parent's sockets.
        """
        inherited = list(self._states.items())
        _forgotten.append((inherited, list(self._batches), list(_rescued), list(_collected)))
        _rescued.clear()
        _collected.clear()
        for loop, _state in inherited:
            try:
                hot = vars(loop).pop(READY_ATTR, None)  # the hot path must miss in the child
            except TypeError:
                continue
            _forgotten.append(hot)  # and its store with it
        templates = self.templates()  # templates are process-wide, keep them
        self._reset()
        for template in templates:
            self.add_template(template)

    def clear_for_tests(self) -> None:
        """Start empty, keeping the templates (the test suite's reset, not a fork's)."""
        templates = self.templates()
        _rescued.clear()
        _collected.clear()
        self._reset()
        for template in templates:
            self.add_template(template)

    # -- templates --------------------------------------------------------------------------

    def add_template(self, template: Any) -> None:
        with self._lock:
            self._template_serial += 1
            self._templates[self._template_serial] = weakref.ref(template)

    def templates(self) -> list[Any]:
        """The live templates, in creation order (a snapshot)."""
        with self._lock:
            live = [t for ref in self._templates.values() if (t := ref()) is not None]
            if len(live) != len(self._templates):
                for serial, ref in list(self._templates.items()):
                    if ref() is None:
                        del self._templates[serial]
            return live

    # -- loops ------------------------------------------------------------------------------

    def get(
        self,
        loop: asyncio.AbstractEventLoop,
        _ref: Callable[[Any], Any] = weakref.ref,
    ) -> LoopState | None:
        """The loop's state, or ``None``. Lock-free; see "Races it accepts"."""
        # What ``WeakKeyDictionary.get`` does, one Python call shorter (the hot paths call it).
        return self._data.get(_ref(loop))

    def add(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: str,
        thread: threading.Thread | None = None,
    ) -> tuple[LoopState, bool]:
        """Return the loop's state, creating it (and its store) if needed; flag: created.

        ``thread`` is the calling thread, when the caller has it at hand already.
        """
        if thread is None:
            thread = threading.current_thread()
        with self._lock:
            state = self._data.get(weakref.ref(loop))
            if state is not None:
                return state, False
            self._serial += 1
            state = LoopState(
                loop_ref=_dummy_ref,
                origin=origin,
                thread=thread,
                pid=self.pid,
                serial=self._serial,
                generation=_generation[0],
            )
            state.loop_ref = weakref.ref(loop, _collected_callback(state))
            # Update the thread's entry in place (its key, with the dict's removal callback,
            # stays); only a thread's first loop needs ``WeakKeyDictionary.__setitem__``.
            thread_key = weakref.ref(thread)
            if thread_key in self._newest_data:
                self._newest_data[thread_key] = self._serial
            else:
                self._newest[thread] = self._serial
            store = Store(None, state)
            state.strong_store = store  # pinned
            store.hot[STORE_KEY] = store
            try:
                _set_attr(loop, READY_ATTR, store.hot)
            except (AttributeError, TypeError):  # no instance __dict__: no hot path; pinned
                del store.hot[STORE_KEY]
            else:
                state.store_ref = weakref.ref(store)
            self._states[loop] = state
            if thread is not self._last_thread and not self.multithreaded:
                self._last_thread = thread
                self.multithreaded = any(s.thread is not thread for s in self._states.values())
        if _wakeup.locked():  # wake_reaper(), inline
            try:
                _wakeup.release()
            except RuntimeError:  # woken meanwhile
                pass
        return state, True

    def discard(self, state: LoopState) -> None:
        """Stop tracking a loop. Idempotent; what it held must already be in custody."""
        with self._lock:
            if state.discarded:
                return
            state.discarded = True
            state.closing = True
            loop = state.loop_ref()
            if loop is not None:
                # The weak-keyed dict's own entry, by an equal reference (``del
                # self._states[loop]`` does the same through two more Python calls).
                data = self._data
                key = state.loop_ref
                if data.get(key) is state:
                    del data[key]
            store = state.strong_store if state.strong_store is not None else state.store_ref()
            state.strong_store = None
        if store is None:
            return
        # Break the loop <-> store and store <-> hot dict cycles: refcounting frees them.
        store.loop = None
        hot = store.hot
        hot.pop(STORE_KEY, None)
        if loop is not None:
            try:
                if _get_attr(loop, READY_ATTR) is hot:
                    _del_attr(loop, READY_ATTR)
            except (AttributeError, TypeError):
                pass

    def unpin(self, state: LoopState, loop: asyncio.AbstractEventLoop) -> bool:
        """Let a suspect loop be collected with its resources; False if it cannot be."""
        with self._lock:
            store: Store | None = state.strong_store
            if store is None or state.discarded or state.closing:
                return False
            if carried_store(loop) is not store:
                return False
            store.loop = loop
            state.strong_store = None
            return True

    def pin(self, state: LoopState) -> None:
        """Hold a loop's store again: the loop is in use after all."""
        with self._lock:
            if state.strong_store is not None:
                return
            store = state.store_ref()
            if store is not None:
                store.loop = None
                state.strong_store = store

    def superseded(self, state: LoopState) -> bool:
        """True if the loop's thread has tracked a newer loop since: it may be done with it."""
        with self._lock:
            return self._newest.get(state.thread, 0) > state.serial

    def snapshot(self) -> list[tuple[asyncio.AbstractEventLoop, LoopState]]:
        """Every tracked loop and its state, copied under the lock."""
        with self._lock:
            return list(self._states.items())

    def drain_rescued(self) -> list[tuple[LoopState, asyncio.AbstractEventLoop | None, Batch]]:
        """Stores of collected loops, each taken into a batch; their states now untracked."""
        drained = []
        while True:
            try:
                store = _rescued.popleft()
            except IndexError:
                break
            with self._lock:
                state = store.state
                if state.discarded or store.generation != _generation[0]:
                    continue
                state.discarded = True
                state.closing = True
                state.strong_store = None
                batch = self._batch_locked(state, store)
                loop, store.loop = store.loop, None
                store.hot.pop(STORE_KEY, None)
            drained.append((state, loop, batch))
        return drained

    def drain_collected(self) -> list[tuple[LoopState, Batch]]:
        """Pinned loops that were collected, each with what it held taken into a batch."""
        drained = []
        while True:
            try:
                state = _collected.popleft()
            except IndexError:
                break
            with self._lock:
                store = state.strong_store
                if state.discarded or store is None or state.generation != _generation[0]:
                    continue
                state.discarded = True
                state.closing = True
                state.strong_store = None
                batch = self._batch_locked(state, store)
            drained.append((state, batch))
        return drained

    def idle(self) -> bool:
        """True when nothing is tracked, in custody, rescued or collected."""
        with self._lock:
            return not (self._states or self._batches or _rescued or _collected)

    def __len__(self) -> int:
        return len(self._states)

    def set_managed(self, state: LoopState, managed: bool) -> bool:
        """Mark or unmark a managed loop; False if it was already in the requested state."""
        with self._lock:
            if state.managed == managed:
                return False
            state.managed = managed
            return True

    def managed_loops(self) -> list[asyncio.AbstractEventLoop]:
        with self._lock:
            return [loop for loop, state in self._states.items() if state.managed]

    # -- live views -------------------------------------------------------------------------

    def live_entries(self) -> list[tuple[Spec, LoopState]]:
        """Every live resource as (spec, its loop's state): stores, custody, rescued."""
        with self._lock:
            found = [
                (spec, state) for state in self._states.values() for spec in (state.store() or ())
            ]
            found += [
                (item.spec, batch.state)
                for batch in self._batches
                for item in batch.items
                if item.status != SETTLED
            ]
            found += [(spec, store.state) for store in list(_rescued) for spec in store]
            found += [
                (spec, state)
                for state in list(_collected)
                if not state.discarded and state.strong_store is not None
                for spec in state.strong_store
            ]
            return found

    def live_by_template(self) -> Mapping[str, int]:
        """Live resources per template name (same scope as ``live_entries``)."""
        return dict(collections.Counter(spec.name for spec, _ in self.live_entries()))

    def __repr__(self) -> str:
        with self._lock:
            loops = len(self._states)
            custody = sum(len(b.unsettled()) for b in self._batches)
        live = len(self.live_entries())
        return f"<Registry loops={loops} live={live} in_custody={custody} rescued={len(_rescued)}>"

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter([loop for loop, _ in self.snapshot()])


#: Everything a fork child inherited from its parent: referenced forever, never released.
_forgotten: list[object] = []

registry: Final = Registry()
