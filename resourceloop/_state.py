"""What resourceloop knows about one event loop, and what it keeps on the loop itself.

A ``LoopState`` per tracked loop, with its ``Phase``; the loop's ``Store`` of resources,
carried by the loop; and the ``Item`` and ``Batch`` a resource is in while it is being
released. The ``Registry`` (``_registry``) maps loops to states and moves resources between
stores and batches; ``_lifecycle`` owns the one transition that ends a loop.

A loop's phase
    ``OPEN`` (acquisitions create and store), ``ENDING`` (one owner has taken its resources
    and is releasing them; acquisitions are refused), ``GONE`` (untracked; a later acquisition
    on the same loop starts a new state). Only ``Registry.begin_end`` moves a state from OPEN
    to ENDING, under the registry lock, so exactly one trigger owns a loop's end; only
    ``Registry.discard`` moves it to GONE.

Who may reference whom (the anyio#1203 trap, and how it is avoided)
    A resource usually refers to its loop strongly (``ClientSession._loop``), so a registry
    that holds resources keeps their loops alive. That is deliberate: a tracked loop's end is
    decided while the loop is still reachable, by its owner (close, manager) or by the reaper
    (closed, its thread ended, or its thread moved on to a newer loop and left it idle), never
    by the garbage collector. Once the collector finds a loop and its resources unreachable,
    CPython has already run every finalizer of that cycle (PEP 442): a client's own
    "Unclosed client session" warning included. So each loop's ``Store`` (kept in the loop's
    ``__dict__``, where it doubles as the hot-path cache of ``acquire``) is held strongly by
    its ``LoopState`` until the loop is ``GONE``.

    A loop whose resources do not refer to it is collected like any object: the weak
    reference's callback hands its state to ``collected`` and the reaper forces what it held.

Garbage-collector callbacks
    The loop's weak reference callback runs on any thread at any allocation, possibly one
    that holds the registry lock: it only removes the loop's entry from the registry's map and
    appends to a deque (both atomic) and releases a raw wake-up lock (no other lock); the next
    reaper pass does the work.
"""

from __future__ import annotations

import _thread
import asyncio
import enum
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from collections.abc import Set as AbstractSet
from typing import Any, Final, Protocol

import attrs

__all__ = [
    "ENDING",
    "GONE",
    "HELD",
    "NO_ITEMS",
    "OPEN",
    "READY_ATTR",
    "RELEASING",
    "SETTLED",
    "STORE_KEY",
    "Batch",
    "Item",
    "LoopState",
    "Phase",
    "RemoteWaiter",
    "Spec",
    "Store",
    "Wakeup",
    "loop_attr",
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
#: costs more (see ``benchmarks``).
READY_ATTR: Final = "_resourceloop_ready"
#: The key of a loop's store in its hot dict (``READY_ATTR``); never equal to a ``Spec``.
STORE_KEY: Final = object()

# The loop's attributes are read and written with ``object``'s own methods, never through
# ``vars(loop)``: on CPython 3.11, asking for an instance's ``__dict__`` turns its inline
# attribute values into a real dict, after which every ``self._x`` in asyncio's own methods
# on that loop misses its specialization. They also never run a loop class's own
# ``__getattr__``/``__setattr__`` (user code).
_get_attr: Final = object.__getattribute__
_set_attr: Final = object.__setattr__
_del_attr: Final = object.__delattr__


def loop_attr(loop: object, name: str) -> Any:
    """The loop's attribute ``name`` (its class's if the instance has none), or ``None``."""
    try:
        return _get_attr(loop, name)
    except AttributeError:
        return None


def clear_hot(hot: dict[Any, Any]) -> None:
    """Empty a hot dict of its resources, keeping its store."""
    store = hot.get(STORE_KEY)
    hot.clear()
    if store is not None:
        hot[STORE_KEY] = store


class Phase(enum.IntEnum):
    """Where a loop is in its life, as resourceloop sees it (see the module docstring)."""

    OPEN = 0
    ENDING = 1
    GONE = 2


OPEN: Final = Phase.OPEN
ENDING: Final = Phase.ENDING
GONE: Final = Phase.GONE


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


class Store(dict[Spec, Any]):
    """A loop's resources, ``{spec: resource}``, kept on the loop instance (see above).

    ``hot`` is a plain ``dict`` with the same items, for the hot path (see ``READY_ATTR``):
    every way of changing a store changes it too. While a loop carries the store, ``hot`` also
    holds the store itself, under ``STORE_KEY``.
    """

    __slots__ = ("hot",)

    def __init__(self) -> None:
        super().__init__()
        self.hot: dict[Any, Any] = {}

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
        clear_hot(self.hot)

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
    #: While ``RELEASING`` and suspended: the task that runs the rest of the release, so an
    #: owner that abandons it can stop it (``_force.stop_release``).
    release: Any = None


@attrs.define(eq=False, slots=True)
class Batch:
    """Resources taken out of a store together; owned by whoever took them until settled."""

    state: LoopState
    items: list[Item]

    def unsettled(self) -> list[Item]:
        return [item for item in self.items if item.status != SETTLED]


class RemoteWaiter(Protocol):
    """A cross-thread call waiting for a loop (``_crossthread.RemoteCall``)."""

    what: str

    def fail(self, exc: BaseException) -> None: ...


#: The ``remote`` and ``batches`` of a state that has never needed them: one shared empty set
#: rather than two of 216 bytes per tracked loop.
NO_ITEMS: Final[frozenset[Any]] = frozenset()


class LoopState:
    """Everything resourceloop knows about one event loop.

    ``pending`` holds creations in flight; it is touched only on the loop's own thread, so it
    needs no lock. ``phase``, ``store`` and ``batches`` change under the registry lock.

    A plain class with its own ``__init__`` (not ``attrs``): one is made on every loop's first
    acquisition, and the generated one's keyword handling and factories were most of that
    cost. Fields not given keep the defaults written here.
    """

    __slots__ = (
        "__weakref__",
        "_loop_class",
        "_loop_id",
        "_origin",
        "asyncgen_hook",
        "batches",
        "ender",
        "generation",
        "guard",
        "hook",
        "loop_ref",
        "managed",
        "pending",
        "phase",
        "remote",
        "serial",
        "shutdown_hooked",
        "store",
        "taking",
        "thread",
        "warned_ungraceful",
    )

    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop]
    thread: threading.Thread
    #: Order of tracking; a thread's newest loop has its thread's highest serial.
    serial: int
    #: The registry's generation when tracked: a state of an earlier one was forgotten.
    generation: int
    phase: Phase
    #: The loop's resources, held strongly until the loop is ``GONE`` (see above).
    store: Store | None
    pending: dict[Spec, asyncio.Future[Any]]
    #: Cross-thread acquisitions waiting for this loop; failed if it ends without running them.
    #: Both start as ``NO_ITEMS`` and become sets under the registry lock when first added to
    #: (``Registry.add_remote``, ``_add_batch``): most loops never need either.
    remote: AbstractSet[RemoteWaiter]
    batches: AbstractSet[Batch]
    #: The batch being taken out of the store, until the store no longer shows it.
    taking: Batch | None
    #: Who owns an ``ENDING``: the task that runs it on the loop (``end_on_loop``), or a
    #: token of ``end_loop``'s; a future-like with ``get_loop()`` and ``done()``.
    ender: Any
    managed: bool
    hook: str  # "close", "asyncgen" or "none"
    warned_ungraceful: bool
    #: ``shutdown_default_executor`` is wrapped (``_closehook.install_shutdown_hook``).
    shutdown_hooked: bool
    asyncgen_hook: AsyncGenerator[None, None] | None
    #: Held by a thread other than the owner while it runs this loop to release it (the
    #: reaper, the exit handler); the close hook waits on it rather than fail.
    guard: _thread.LockType

    def __init__(  # noqa: PLR0917 - positional, for ``Registry.add``'s call (see there)
        self,
        loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop],
        origin: str | None,
        thread: threading.Thread,
        serial: int = 0,
        generation: int = 0,
        store: Store | None = None,
        loop: object = None,
    ) -> None:
        """``origin`` as shown, or ``None`` to describe ``loop`` when first asked (``origin``)."""
        self.loop_ref = loop_ref
        self._origin = origin
        self._loop_class = type(loop)
        self._loop_id = id(loop)
        self.thread = thread
        self.serial = serial
        self.generation = generation
        self.phase = OPEN
        self.store = store
        self.pending = {}
        self.remote = NO_ITEMS
        self.batches = NO_ITEMS
        self.taking = None
        self.ender = None
        self.managed = False
        self.hook = "none"
        self.warned_ungraceful = False
        self.shutdown_hooked = False
        self.asyncgen_hook = None
        self.guard = _new_guard()

    @property
    def origin(self) -> str:
        """The loop as warnings, log lines and ``live_resources()`` name it.

        Its class, address and the thread that first acquired on it; made when first asked
        (most loops never are), with the thread's name then.
        """
        origin = self._origin
        if origin is None:
            origin = self._origin = (
                f"{self._loop_class.__name__} {self._loop_id:#x} (thread {self.thread.name!r})"
            )
        return origin

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, or ``None`` once it has been collected."""
        return self.loop_ref()

    def __repr__(self) -> str:
        return f"<LoopState {self.origin} {self.phase.name} serial={self.serial}>"


_new_guard: Final = _thread.allocate_lock


class Wakeup:
    """The reaper's wake-up call, safe to ring anywhere, even in a garbage-collector callback.

    A raw lock, not an Event: it can be released from a weak reference callback, which must
    not take Python-level locks. Released (unlocked) when the reaper has something to do.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def ring(self) -> None:
        lock = self._lock
        if lock.locked():  # mostly it is awake already: raising and catching would cost
            try:
                lock.release()
            except RuntimeError:  # woken meanwhile
                pass

    def wait(self, timeout: float = -1) -> bool:
        """Block until rung (or ``timeout`` seconds); True if rung."""
        return self._lock.acquire(True, timeout)
