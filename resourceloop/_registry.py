"""The only shared mutable state: which loops hold which resources, and who holds them now.

What it owns
    ``Registry._states``, a ``WeakKeyDictionary`` from event loop to ``LoopState``; the live
    templates; the batches in custody; resources rescued from collected loops; and the
    counters behind ``resourceloop.stats()``. It stores and hands back; it never creates,
    releases or closes anything.

Who may reference whom (the anyio#1203 trap, and how it is avoided)
    A resource usually refers to its loop strongly (``ClientSession._loop``), so a registry
    that holds resources keeps their loops alive. That is what we want while the loop may
    still be used or closed by its owner: the resources then end gracefully (close hook,
    manager) or for real (reaper), never by their library's finalizer. So each loop's
    ``Store`` (``{spec: resource}``, kept in the loop's ``__dict__``, where it doubles as the
    hot-path cache of ``acquire``) is *pinned*: its ``LoopState`` holds it strongly.

    A loop whose thread lives on but has moved on to a newer loop (a worker pool running a
    new loop per task and never closing them) may be done with. The reaper *unpins* such a
    suspect: the state drops its strong reference and the store refers to the loop instead,
    so loop, store and resources form one cycle that nothing of ours reaches strongly. If the
    program still refers to the loop, nothing changes (and its next acquisition pins it
    again); if not, the collector finds the cycle and the store's ``__del__`` rescues it (PEP
    442 resurrection) onto ``_rescued``, for the reaper to release on the loop and close it.
    Python runs the finalizers of the whole cycle at once, so a library's own finalizer may
    run first there: that is the price of a loop nobody closed, and only suspects pay it.

    A pinned loop whose resources do not refer to it is collected like any object; the weak
    reference's callback hands its state to ``_collected``, and the reaper forces what it
    held. A loop class without ``__dict__`` cannot carry a store: it is always pinned.

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

    Garbage-collector callbacks never take it: the collector runs on any thread at any
    allocation, including one that holds the lock. ``Store.__del__`` and the loop's weak
    reference callback only append to a deque (``append`` is atomic) and release a raw
    wake-up lock (no allocation, no other lock); the next reaper pass does the work.

Races it accepts
    Reads of ``_states`` (``get``) take no lock: a dict lookup is atomic, and a caller that
    misses a state created a moment ago creates it under the lock, where the miss is checked
    again. A state can be discarded while a thread still holds it; its ``discarded`` flag says
    so, and taking resources from it then yields nothing.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from ._crossthread import RemoteCall

__all__ = [
    "READY_ATTR",
    "STORE_KEY",
    "Batch",
    "Item",
    "LoopState",
    "Registry",
    "Spec",
    "Store",
    "carried_store",
    "registry",
    "rescue",
    "wake_reaper",
]

#: Name of the loop attribute that holds the loop's resources: the plain-dict copy of its
#: ``Store`` (``Store.hot``), which also holds the store itself, under ``STORE_KEY``, so that
#: the loop refers to its store strongly. ``ResourceTemplate.acquire`` reads it, spelling the
#: name out literally for speed: subscripting an exact ``dict`` is specialized by the
#: interpreter, a subclass's is not (about 200 machine instructions more per hit on 3.11).
#:
#: It is the only data attribute resourceloop sets on a loop (``close``, and on a loop that
#: acquires outside a manager ``shutdown_default_executor``, are the others). Each one counts:
#: CPython keeps at most 30 attribute names of a class's instances inline, and asyncio's loop
#: already has 24 (3.12), 26 (3.13) or 27 (3.14) of them; one more name than fits turns that
#: loop's attributes into a real dict, and every ``self._x`` in asyncio's own methods then
#: costs more (on 3.13, 14% more instructions for a loop that only runs callbacks; see
#: ``benchmarks``).
READY_ATTR: Final = "_resourceloop_ready"
#: The key of a loop's store in its hot dict (``READY_ATTR``); never equal to a ``Spec``.
STORE_KEY: Final = object()

# The loop's attributes are read and written with ``object``'s own methods, never through
# ``vars(loop)``: on CPython 3.11, asking for an instance's ``__dict__`` turns its inline
# attribute values into a real dict, after which every ``self._x`` in asyncio's own methods
# on that loop misses its specialization (about 280 more machine instructions each). They
# also never run a loop class's own ``__getattr__``/``__setattr__`` (user code).
_get_attr: Final = object.__getattribute__
_set_attr: Final = object.__setattr__
_del_attr: Final = object.__delattr__


def loop_attr(loop: object, name: str) -> Any:
    """The loop's attribute ``name`` (its class's if the instance has none), or ``None``."""
    try:
        return _get_attr(loop, name)
    except AttributeError:
        return None


def carried_store(loop: object) -> Store | None:
    """The store ``loop`` carries (``READY_ATTR``), or ``None``."""
    hot = loop_attr(loop, READY_ATTR)
    store = hot.get(STORE_KEY) if type(hot) is dict else None
    return store if isinstance(store, Store) else None


def _clear_hot(hot: dict[Any, Any]) -> None:
    """Empty a hot dict of its resources, keeping its store."""
    store = hot.get(STORE_KEY)
    hot.clear()
    if store is not None:
        hot[STORE_KEY] = store


@attrs.define(eq=False, slots=True)
class Spec:
    """What releasing needs of a template, without the template itself.

    Stores are keyed by the spec, not the template, so that a template nobody refers to any
    more is collected (and leaves ``resource_templates`` and what managers acquire) while the
    resources it made can still be released through their spec.
    """

    name: str
    release_func: Callable[[Any], Any] | None
    force_release_func: Callable[[Any], Any] | None


#: Bumped whenever the registry starts empty (a fork child, the test suite's reset): stores of
#: an earlier generation belong to a registry that forgot them, and are never rescued.
_generation: list[int] = [0]


_dict_set: Final = dict.__setitem__
_dict_clear: Final = dict.clear


class Store(dict[Spec, Any]):
    """A loop's resources, ``{spec: resource}``, kept on the loop instance (see above).

    ``hot`` is a plain ``dict`` with the same items, for the hot path (see ``READY_ATTR``):
    every way of changing a store changes it too. While a loop carries the store, ``hot`` also
    holds the store itself, under ``STORE_KEY``.
    """

    __slots__ = ("__weakref__", "generation", "hot", "loop", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop | None, state: LoopState) -> None:
        super().__init__()
        self.hot: dict[Any, Any] = {}
        self.loop = loop
        self.state = state
        self.generation = _generation[0]

    def __setitem__(self, spec: Spec, resource: Any) -> None:
        dict.__setitem__(self, spec, resource)
        self.hot[spec] = resource

    def __delitem__(self, spec: Spec) -> None:
        dict.__delitem__(self, spec)
        self.hot.pop(spec, None)

    def pop(self, spec: Spec, *default: Any) -> Any:
        self.hot.pop(spec, None)
        return dict.pop(self, spec, *default)

    def popitem(self) -> tuple[Spec, Any]:
        spec, resource = dict.popitem(self)
        self.hot.pop(spec, None)
        return spec, resource

    def clear(self) -> None:
        dict.clear(self)
        _clear_hot(self.hot)

    def setdefault(self, spec: Spec, default: Any = None) -> Any:
        resource = dict.setdefault(self, spec, default)
        self.hot[spec] = resource
        return resource

    def update(self, *args: Any, **kwargs: Any) -> None:
        dict.update(self, *args, **kwargs)
        self.hot.update(self)

    def __ior__(self, other: Any) -> Store:  # type: ignore[override,misc]
        self.update(other)
        return self

    def current(self) -> bool:
        """True if this store belongs to the registry in force (not a forgotten one)."""
        return self.generation == _generation[0]

    def __del__(self, _current: list[int] = _generation) -> None:
        # Runs when the collector finds an unpinned loop, this store and the resources
        # unreachable (or when an empty store is dropped). Appending ourselves resurrects the
        # whole cycle; the reaper releases the resources and closes the loop. Nothing else is
        # safe here.
        if self and self.loop is not None and self.generation == _current[0]:
            rescue(self)


#: Statuses of an ``Item``.
HELD: Final = 0  # taken, its release not begun
RELEASING: Final = 1  # its graceful release is running
SETTLED: Final = 2  # released, forced or failed: counted once


@attrs.define(eq=False, slots=True)
class Item:
    """One resource in custody."""

    spec: Spec
    resource: Any
    status: int = HELD
    #: The release coroutine while ``RELEASING``, so an owner that abandons it can close it.
    release: Any = None


@attrs.define(eq=False, slots=True)
class Batch:
    """Resources taken out of a store together; owned by whoever took them until settled."""

    state: LoopState
    items: list[Item]

    def unsettled(self) -> list[Item]:
        return [item for item in self.items if item.status != SETTLED]


@attrs.define(eq=False)
class LoopState:
    """Everything resourceloop knows about one event loop.

    ``pending`` holds creations in flight; it is touched only on the loop's own thread, so it
    needs no lock. ``batches`` (under the registry lock) are this loop's resources in custody.
    """

    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop]
    origin: str
    thread: threading.Thread
    pid: int
    #: Order of tracking; a thread's newest loop has its thread's highest serial.
    serial: int = 0
    generation: int = attrs.field(factory=lambda: _generation[0])
    #: The store, weakly (it lives on the loop), and strongly while pinned (see above).
    store_ref: Callable[[], Store | None] = attrs.field(default=lambda: None)
    strong_store: Store | None = None
    pending: dict[Spec, asyncio.Future[Any]] = attrs.field(factory=dict)
    #: Cross-thread acquisitions waiting for this loop; failed if it closes without running them.
    remote: set[RemoteCall] = attrs.field(factory=set)
    batches: set[Batch] = attrs.field(factory=set)
    managed: bool = False
    closing: bool = False
    discarded: bool = False
    hook: str = "none"  # "close", "asyncgen" or "none"
    warned_ungraceful: bool = False
    #: ``shutdown_default_executor`` is wrapped (``_closehook.install_shutdown_hook``).
    shutdown_hooked: bool = False
    asyncgen_hook: AsyncGenerator[None, None] | None = None
    #: Held by a thread other than the owner while it runs this loop to release it (the
    #: reaper, the exit handler); the close hook waits on it rather than fail.
    guard: threading.Lock = attrs.field(factory=threading.Lock)

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, or ``None`` once it has been collected."""
        return self.loop_ref()

    def store(self) -> Store | None:
        return self.strong_store if self.strong_store is not None else self.store_ref()

    @property
    def pinned(self) -> bool:
        return self.strong_store is not None


@attrs.frozen
class Counters:
    acquisitions: int = 0
    graceful_releases: int = 0
    forced_releases: int = 0
    release_failures: int = 0
    release_timeouts: int = 0
    reaper_passes: int = 0


#: Stores whose unpinned loop was collected with resources in them (see ``Store.__del__``).
_rescued: collections.deque[Store] = collections.deque()
#: States of pinned loops that were collected (their resources did not refer to them).
_collected: collections.deque[LoopState] = collections.deque()

_dummy_ref: Any = weakref.ref(Spec("", None, None))  # replaced at once; dead from the start

#: Released (unlocked) when the reaper has something to do. A raw lock, not an Event: it can
#: be released from a garbage-collector callback, which must not take Python-level locks.
_wakeup = _thread.allocate_lock()
_wakeup.acquire()


def _collected_callback(state: LoopState) -> Callable[[Any], None]:
    """The loop's weak reference callback: hand a pinned, collected loop's state over."""

    def collected(_: Any, _append: Callable[[LoopState], None] = _collected.append) -> None:
        if state.strong_store:  # pinned and holding resources; an unpinned store rescues itself
            _append(state)
            wake_reaper()

    return collected


def rescue(store: Store) -> None:
    """Hand a collected loop's store (which refers to the loop) to the reaper; lock-free."""
    _rescued.append(store)
    wake_reaper()


def wake_reaper() -> None:
    """Wake the reaper thread; safe anywhere, even inside a garbage-collector callback."""
    if _wakeup.locked():  # mostly it is awake already: raising and catching would cost
        try:
            _wakeup.release()
        except RuntimeError:  # woken meanwhile
            pass


def wakeup_lock() -> Any:
    return _wakeup


class Registry:
    """Loop -> ``LoopState``, the live templates, custody and counters; see the module doc."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        _generation[0] += 1
        self._lock = threading.Lock()
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
        self._batches: set[Batch] = set()
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(Counters), 0)
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

    def mark_closing(self, state: LoopState) -> None:
        """Refuse later acquisitions on the loop (``take_all(closing=True)``, taking nothing)."""
        with self._lock:
            state.closing = True

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

    # -- counters ---------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> Counters:
        with self._lock:
            return Counters(**self._counts)

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
