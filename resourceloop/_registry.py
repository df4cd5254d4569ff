"""The only shared mutable state: which loops hold which resources.

What it owns
    ``Registry._states``, a ``WeakKeyDictionary`` from event loop to ``LoopState``, the live
    templates, and the counters behind ``resourceloop.stats()``. It stores and hands back; it
    never creates, releases or closes anything.

Who may reference whom
    A ``LoopState`` refers to its loop only weakly (``loop_ref``). The resources it holds may
    refer to the loop strongly (an ``aiohttp.ClientSession`` does), and then the entry cannot die
    by itself: the close hook, the reaper and explicit releases end entries, not the garbage
    collector. Loops whose resources do not refer to them are still collected, and their
    ``weakref.finalize`` hook hands the state to the reaper. The hot-path cache of ready futures
    lives on the loop instance (``READY_ATTR``), never here, because a future refers to its loop.

The lock
    ``Registry._lock`` guards the structure: ``_states``, every ``LoopState.resources`` dict
    (written on the loop's thread, taken by whichever thread releases), ``managed`` and
    ``closing`` flags, and the counters. It is held for a few dictionary operations at a time:
    never across an ``await``, never while calling user code (acquire and release functions,
    ``__setattr__`` of a user's loop class, warning filters), never while joining a thread.

    Garbage-collector callbacks never take it. GC can run on any thread at any allocation,
    including one that holds the lock, and a callback that took it would deadlock. Such
    callbacks only append to ``_collected`` (a deque, whose ``append`` is atomic) and the next
    reaper pass does the work.

Races it accepts
    Reads of ``_states`` (``get``) take no lock: a dict lookup is atomic, and a caller that
    misses a state created a moment ago creates it under the lock, where the miss is checked
    again. A state can be discarded while a thread still holds it; its ``discarded`` flag says
    so, and taking resources from it then yields nothing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Hashable, Iterator, Mapping
from typing import Any, Final

import attrs

__all__ = ["READY_ATTR", "LoopState", "Registry", "registry"]

#: Name of the attribute that caches the hot path's ``{template: done future or resource}`` on a
#: loop instance. ``ResourceTemplate.acquire`` spells it out literally, for speed.
READY_ATTR: Final = "_resourceloop_ready"


@attrs.define(eq=False)
class LoopState:
    """Everything resourceloop knows about one event loop.

    ``resources`` is in acquisition order, which is the reverse of release order. ``pending``
    holds creations in flight; it is touched only on the loop's own thread, so it needs no lock.
    """

    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop]
    origin: str
    thread: threading.Thread
    pid: int
    resources: dict[Hashable, Any] = attrs.field(factory=dict)
    pending: dict[Hashable, asyncio.Future[Any]] = attrs.field(factory=dict)
    #: Cross-thread acquisitions waiting for this loop; failed if it closes without running them.
    remote: set[concurrent.futures.Future[Any]] = attrs.field(factory=set)
    managed: bool = False
    closing: bool = False
    discarded: bool = False
    hook: str = "none"  # "close", "asyncgen" or "none"
    warned_ungraceful: bool = False
    finalizer: weakref.finalize[Any, Any] | None = None
    asyncgen_hook: AsyncGenerator[None, None] | None = None

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop, or ``None`` once it has been collected."""
        return self.loop_ref()


@attrs.frozen
class Counters:
    acquisitions: int = 0
    graceful_releases: int = 0
    forced_releases: int = 0
    release_failures: int = 0
    release_timeouts: int = 0
    reaper_passes: int = 0


class Registry:
    """Loop -> ``LoopState``, the live templates, and the counters; see the module docstring."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._templates: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._template_serial = 0
        self._collected: collections.deque[LoopState] = collections.deque()
        self._threads: collections.Counter[threading.Thread] = collections.Counter()
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(Counters), 0)
        self.multithreaded = False
        #: Set while any loop is tracked or a collected state awaits the reaper.
        self.has_work = threading.Event()

    # -- fork -------------------------------------------------------------------------------

    def forget_after_fork(self) -> None:
        """Start empty in a fork child, keeping the parent's states referenced but inert.

        Runs in ``os.register_at_fork(after_in_child=...)``, so it must be cheap: the old
        structures are parked in a list, not walked. The parent's ``weakref.finalize`` hooks
        still fire in the child when a parent loop dies; their states carry the parent's pid,
        and ``drain_collected`` drops them unreleased.
        """
        _forgotten.append(
            (self._states, self._collected, self._templates)
        )  # keep the parent's resources alive: never release them here
        templates = list(self._templates.values())  # templates are process-wide, keep them
        self._reset()
        for template in templates:
            self.add_template(template)

    # -- templates --------------------------------------------------------------------------

    def add_template(self, template: Any) -> None:
        with self._lock:
            self._template_serial += 1
            self._templates[self._template_serial] = template

    def templates(self) -> list[Any]:
        """The live templates, in creation order (a snapshot)."""
        with self._lock:
            return list(self._templates.values())

    # -- loops ------------------------------------------------------------------------------

    def get(self, loop: asyncio.AbstractEventLoop) -> LoopState | None:
        """The loop's state, or ``None``. Lock-free; see "Races it accepts"."""
        return self._states.get(loop)

    def add(self, loop: asyncio.AbstractEventLoop, origin: str) -> tuple[LoopState, bool]:
        """Return the loop's state, creating it if needed; the flag says it was created."""
        with self._lock:
            state = self._states.get(loop)
            if state is not None:
                return state, False
            thread = threading.current_thread()
            state = LoopState(
                loop_ref=weakref.ref(loop), origin=origin, thread=thread, pid=os.getpid()
            )
            self._states[loop] = state
            self._threads[thread] += 1
            if len(self._threads) > 1:
                self.multithreaded = True
            finalizer = weakref.finalize(loop, self._collected.append, state)
            finalizer.atexit = False  # the exit hook decides what happens at exit
            state.finalizer = finalizer
            self.has_work.set()
            return state, True

    def discard(self, state: LoopState) -> None:
        """Stop tracking a loop. Idempotent; the state's resources must already be taken."""
        with self._lock:
            if state.discarded:
                return
            state.discarded = True
            loop = state.loop_ref()
            if loop is not None and self._states.get(loop) is state:
                del self._states[loop]
            self._forget_thread(state)
            if state.finalizer is not None:
                state.finalizer.detach()
                state.finalizer = None

    def _forget_thread(self, state: LoopState) -> None:
        self._threads[state.thread] -= 1
        if self._threads[state.thread] <= 0:
            del self._threads[state.thread]

    def snapshot(self) -> list[tuple[asyncio.AbstractEventLoop, LoopState]]:
        """Every tracked loop and its state, copied under the lock."""
        with self._lock:
            return list(self._states.items())

    def drain_collected(self) -> list[LoopState]:
        """States whose loop was garbage-collected since the last call, now untracked."""
        drained: list[LoopState] = []
        pid = os.getpid()
        while True:
            try:
                state = self._collected.popleft()
            except IndexError:
                break
            if state.pid != pid:
                continue  # a parent's loop died in a fork child: never release it here
            with self._lock:
                if state.discarded:
                    continue
                state.discarded = True
                state.finalizer = None
                self._forget_thread(state)
            drained.append(state)
        return drained

    def idle(self) -> bool:
        """True when nothing is tracked; clears ``has_work`` if so."""
        with self._lock:
            if self._states or self._collected:
                return False
            self.has_work.clear()
            return True

    def __len__(self) -> int:
        return len(self._states)

    # -- resources of one loop --------------------------------------------------------------

    def store(self, state: LoopState, template: Hashable, resource: Any) -> bool:
        """Record a created resource; False if the loop began closing meanwhile."""
        with self._lock:
            if state.closing or state.discarded:
                return False
            state.resources[template] = resource
            self._counts["acquisitions"] += 1
            return True

    def take(self, state: LoopState, template: Hashable) -> tuple[bool, Any]:
        """Take one resource out of the state: whoever takes it releases it, exactly once."""
        with self._lock:
            if template in state.resources:
                return True, state.resources.pop(template)
            return False, None

    def take_all(self, state: LoopState, *, closing: bool) -> list[tuple[Hashable, Any]]:
        """Take every resource, newest first. ``closing`` refuses later acquisitions."""
        with self._lock:
            if closing:
                state.closing = True
            taken = list(state.resources.items())
            state.resources.clear()
        taken.reverse()
        return taken

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

    def live_by_template(self) -> Mapping[str, int]:
        """Live resources per template name, over tracked and collected-but-unreaped loops."""
        live: collections.Counter[str] = collections.Counter()
        with self._lock:
            states = [*self._states.values(), *self._collected]
            for state in states:
                for template in state.resources:
                    live[getattr(template, "name", repr(template))] += 1
        return dict(live)

    def live_entries(self) -> list[tuple[Hashable, LoopState]]:
        """Every live resource as (template, its loop's state), same scope as above (a snapshot)."""
        with self._lock:
            states = [*self._states.values(), *self._collected]
            return [(template, state) for state in states for template in state.resources]

    def __repr__(self) -> str:
        with self._lock:
            loops = len(self._states)
            live = sum(len(s.resources) for s in self._states.values())
            pending = len(self._collected)
        return f"<Registry loops={loops} resources={live} collected_pending={pending}>"

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter([loop for loop, _ in self.snapshot()])


#: Structures a fork child inherited from its parent: referenced forever, never released.
_forgotten: list[object] = []

registry: Final = Registry()
