"""Custody: who holds each resource now, and how each one ended, counted once.

A resource is in exactly one place at a time: a store (live on its loop), a ``Batch`` (taken
for release, owned by whoever took it), or ``_state._rescued``. ``take``/``take_all`` move it
from a store into a new batch under the lock; ``settle`` records each item's end (graceful,
forced or failed) exactly once, under the lock, so two owners racing to settle the same item
cannot both count it. ``claim`` lets a forced release keep others off an item while it calls
the force function, and ``count`` then records the outcome.

``Ledger`` is the part of the ``Registry`` (``_registry``) that does this; it owns the lock
they share (see "The lock" there).
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

from ._state import (
    SETTLED,
    Batch,
    Item,
    LoopState,
    Spec,
    Store,
    _clear_hot,
    _dict_clear,
    _dict_set,
)

__all__ = ["Counters", "Ledger"]


@attrs.frozen
class Counters:
    acquisitions: int = 0
    graceful_releases: int = 0
    forced_releases: int = 0
    release_failures: int = 0
    release_timeouts: int = 0
    reaper_passes: int = 0


class Ledger:
    """The registry's lock, the batches in custody and the counters; see the module doc."""

    _lock: threading.Lock
    _batches: set[Batch]
    _counts: dict[str, int]

    def _reset_ledger(self) -> None:
        self._lock = threading.Lock()
        self._batches = set()
        self._counts = dict.fromkeys(attrs.fields_dict(Counters), 0)

    # -- custody ----------------------------------------------------------------------------

    def store(self, state: LoopState, spec: Spec, resource: Any) -> bool:
        """Record a created resource; False if the loop began closing meanwhile."""
        with self._lock:
            store = state.strong_store
            if store is None:
                store = state.store_ref()
            if state.closing or state.discarded or store is None:
                return False
            # ``store[spec] = resource``, without the Python-level call (see ``Store``).
            _dict_set(store, spec, resource)
            store.hot[spec] = resource
            self._counts["acquisitions"] += 1
            return True

    def adopt(self, state: LoopState, spec: Spec, resource: Any) -> Batch:
        """Count a resource created too late to store (its loop is closing) and take it."""
        with self._lock:
            self._counts["acquisitions"] += 1
            batch = Batch(state, [Item(spec, resource)])
            state.batches.add(batch)
            self._batches.add(batch)
            return batch

    def _batch_locked(self, state: LoopState, store: Store, only: Spec | None = None) -> Batch:
        if only is None:
            items = [Item(spec, resource) for spec, resource in reversed(store.items())]
            _dict_clear(store)  # ``store.clear()``, without the Python-level call
            _clear_hot(store.hot)
        else:
            items = [Item(only, store.pop(only))] if only in store else []
        batch = Batch(state, items)
        if items:
            state.batches.add(batch)
            self._batches.add(batch)
        return batch

    def take(self, state: LoopState, spec: Spec) -> Batch:
        """Take one resource into a new batch (empty if the loop does not hold it)."""
        with self._lock:
            store = state.store()
            if store is None:
                return Batch(state, [])
            return self._batch_locked(state, store, spec)

    def take_all(self, state: LoopState, *, closing: bool) -> Batch:
        """Take every resource, newest first. ``closing`` refuses later acquisitions."""
        with self._lock:
            if closing:
                state.closing = True
            store = state.store()
            if store is None:
                return Batch(state, [])
            return self._batch_locked(state, store)

    def settle(self, batch: Batch, item: Item, outcome: str) -> bool:
        """Count ``item``'s end once; False if another owner settled it first."""
        with self._lock:
            if item.status == SETTLED:
                return False
            item.status = SETTLED
            self._counts[outcome] += 1
            for other in batch.items:
                if other.status != SETTLED:
                    break
            else:
                batch.state.batches.discard(batch)
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
            if all(i.status == SETTLED for i in batch.items):
                batch.state.batches.discard(batch)
                self._batches.discard(batch)
            return True

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
