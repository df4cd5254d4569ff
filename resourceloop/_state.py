"""What resourceloop knows about one event loop, and what it keeps on the loop itself.

A ``LoopState`` per tracked loop; the loop's ``Store`` of resources, carried by the loop; the
``Item`` and ``Batch`` a resource is in while it is being released; and the lock-free hand-off
from the garbage collector to the reaper (``rescue``, ``_collected``). The ``Registry``
(``_registry``) maps loops to states and moves resources between stores and batches.

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

Garbage-collector callbacks
    ``Store.__del__`` and the loop's weak reference callback run on any thread at any
    allocation, possibly one that holds the registry lock: they only append to a deque
    (``append`` is atomic) and release a raw wake-up lock (no allocation, no other lock); the
    next reaper pass does the work.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from ._crossthread import RemoteCall

__all__ = [
    "HELD",
    "READY_ATTR",
    "RELEASING",
    "SETTLED",
    "STORE_KEY",
    "Batch",
    "Item",
    "LoopState",
    "Spec",
    "Store",
    "carried_store",
    "loop_attr",
    "rescue",
    "wake_reaper",
    "wakeup_lock",
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
