"""``ResourceTemplate``: how to make and free one kind of resource, once per event loop.

Each event loop that asks for it gets its own copy, created on that loop the first time it is
awaited and released on that loop when the loop leaves a ``ResourceManager``, closes, or is
abandoned (see ``_runtime``). The resources live in a store on the loop instance (see
``_registry``), which is also the hot path's cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NoReturn, TypeVar, overload

from . import _config
from ._compat import get_running_loop_or_none
from ._crossthread import on_loop, retrieve, settle_threadsafe
from ._errors import AcquisitionCycleError, LoopClosedError
from ._force import force_batch
from ._registry import registry
from ._release import PLAIN_TYPES, release_batch
from ._release import isawaitable_fast as _isawaitable
from ._runtime import reap, track_new, unmanaged_acquisition
from ._state import GONE, OPEN, LoopState, Spec

__all__ = ["ResourceTemplate"]

R = TypeVar("R")

#: The running loop or None, typed loosely: the hot path reads an attribute that only some
#: loops have (mypy's view of ``_get_running_loop`` also differs between Python versions).
_running_loop: Callable[[], Any] = get_running_loop_or_none

#: No result yet (``None`` is a resource like any other).
_NOTHING: Any = object()

#: The specs whose creation the current task is part of (outermost first): a creation that
#: acquires one of them again would wait for itself.
_creating: contextvars.ContextVar[tuple[Spec, ...]] = contextvars.ContextVar(
    "resourceloop_creating", default=()
)


def _running(what: str) -> asyncio.AbstractEventLoop:
    """The running loop, or a RuntimeError that names the template and says what to do."""
    loop = get_running_loop_or_none()
    if loop is None:
        raise RuntimeError(
            f"{what}() needs a running asyncio event loop: await it in a coroutine that "
            "asyncio runs (asyncio.run(), an asyncio.Runner, or your framework's loop)"
        ) from None
    return loop


def _check_loop(loop: object, what: str) -> asyncio.AbstractEventLoop | None:
    if loop is None or isinstance(loop, asyncio.AbstractEventLoop):
        return loop
    raise TypeError(
        f"{what}(loop=...) takes an asyncio event loop or None (for the running loop), "
        f"got {type(loop).__name__}: {loop!r}"
    )


class ResourceTemplate(Generic[R]):
    """How to acquire and release one kind of resource, once per event loop.

    Args:
        acquire_func: Called on the loop to create its resource; may return the resource or an
            awaitable of it.
        release_func: Called on the loop with the resource to free it; may return an awaitable.
            Optional.
        name: Shown in warnings, log lines, ``stats()`` and errors. Defaults to the qualified
            name of ``acquire_func``.
        lazy: Leave this template out of the eager acquisition a ``ResourceManager`` does on
            entry; it is then created on first ``acquire()`` and still released on exit.
        force_release_func: Called synchronously, from whichever thread notices, when the loop
            can no longer run (closed, collected, or the release timed out). Without it, a
            synchronous ``release_func`` stands in; an ``async`` one cannot run and is skipped.

    Raises:
        TypeError: A function argument is not callable, ``name`` is not a string or ``lazy``
            not a bool.
        ValueError: ``name`` is empty.

    The template must not be used with locks inside ``acquire_func``/``release_func`` that other
    acquisitions hold: those functions run on the loop like any other coroutine.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("__weakref__", "_acquire_func", "_lazy", "_returns_resource", "_spec")

    # Two overloads, because mypy cannot solve ``R`` from ``Callable[[], R | Awaitable[R]]``
    # when given an ``async def`` factory (it infers ``Awaitable[Never]``).
    @overload
    def __init__(
        self,
        acquire_func: Callable[[], Awaitable[R]],
        release_func: Callable[[R], Any] | None = None,
        *,
        name: str | None = None,
        lazy: bool = False,
        force_release_func: Callable[[R], Any] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        acquire_func: Callable[[], R],
        release_func: Callable[[R], Any] | None = None,
        *,
        name: str | None = None,
        lazy: bool = False,
        force_release_func: Callable[[R], Any] | None = None,
    ) -> None: ...
    def __init__(
        self,
        acquire_func: Callable[[], R | Awaitable[R]],
        release_func: Callable[[R], Any] | None = None,
        *,
        name: str | None = None,
        lazy: bool = False,
        force_release_func: Callable[[R], Any] | None = None,
    ) -> None:
        if not callable(acquire_func):
            raise TypeError(f"acquire_func must be callable, got {acquire_func!r}")
        if release_func is not None and not callable(release_func):
            raise TypeError(f"release_func must be callable or None, got {release_func!r}")
        if force_release_func is not None and not callable(force_release_func):
            raise TypeError(
                f"force_release_func must be callable or None, got {force_release_func!r}"
            )
        if name is None:
            name = getattr(acquire_func, "__qualname__", None) or repr(acquire_func)
        elif not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__} {name!r}")
        elif not name.strip():
            raise ValueError(
                f"name must be a non-empty string (warnings, stats() and errors show it), "
                f"got {name!r}; leave it out to use acquire_func's name"
            )
        if not isinstance(lazy, bool):
            raise TypeError(f"lazy must be True or False, got {type(lazy).__name__} {lazy!r}")
        self._acquire_func = acquire_func
        # Releasing needs only the spec, so stores key on it and never keep the template alive.
        self._spec = Spec(name, release_func, force_release_func)
        self._lazy = lazy
        #: What ``acquire_func`` returns is the resource even when it is awaitable (set by
        #: ``contrib`` for a client that is awaitable itself, redis-py's ``Redis``): stored as
        #: returned, with no task to await it.
        self._returns_resource = False
        registry.add_template(self)

    @property
    def acquire_func(self) -> Callable[[], R | Awaitable[R]]:
        """The function that creates a loop's resource, as given; read-only."""
        return self._acquire_func

    @property
    def release_func(self) -> Callable[[R], Any] | None:
        """The function that releases a resource on its loop, or ``None``; read-only."""
        return self._spec.release_func

    @property
    def force_release_func(self) -> Callable[[R], Any] | None:
        """The synchronous release used when the loop cannot run, or ``None``; read-only."""
        return self._spec.force_release_func

    @property
    def name(self) -> str:
        """The name shown in warnings, log lines, ``stats().resources_live`` and errors."""
        return self._spec.name

    @property
    def lazy(self) -> bool:
        """Whether a ``ResourceManager`` skips this template on entry (see ``lazy=``)."""
        return self._lazy

    def __repr__(self) -> str:
        lazy = " lazy" if self._lazy else ""
        return f"<ResourceTemplate {self._spec.name!r}{lazy}>"

    # -- acquire ------------------------------------------------------------------------------

    async def acquire(self, loop: asyncio.AbstractEventLoop | None = None) -> R:
        """Return the resource of ``loop`` (default: the running loop), creating it once.

        Concurrent first calls on one loop share a single creation; cancelling a waiter
        never cancels it. If ``acquire_func`` raises, every waiter gets the error, nothing
        is stored and the next call tries again. With an explicit ``loop`` running in
        another thread, the resource is created (or found) there and the result awaited
        here. A coroutine function on every Python: ``await`` it, or pass it to
        ``asyncio.create_task``, ``gather`` or ``wait_for``.

        Raises:
            TypeError: ``loop`` is not an event loop.
            LoopClosedError: The loop is closed or closing.
            AcquisitionCycleError: ``acquire_func`` needs, directly or through other
                templates, this template's own resource.
            RuntimeError: No loop is running, or ``loop`` is neither the running loop nor
                running in another thread.
            ConfigurationError: On the first use of resourceloop, a ``RESOURCELOOP_*``
                environment variable is invalid.

        Call it from a coroutine; safe from any loop and any thread.

        .. versionadded:: 0.1.0
        """
        # The hot path: the running loop's store (on the loop instance, see ``_registry``)
        # already holds the resource: one attribute and one dict lookup, no lock. The
        # attribute is spelled out (it is ``READY_ATTR``): a literal lookup is the fastest.
        # Nothing else before it: each statement here is about 1% of a hit.
        if loop is None:
            try:
                return _running_loop()._resourceloop_ready[self._spec]  # type: ignore[no-any-return]
            except KeyError:  # the loop holds other resources, not this one yet
                untracked = False
            except AttributeError:  # no running loop, or one that carries no store: untracked
                untracked = True  # (or one whose store cannot be carried: ``add`` finds it)
        else:
            untracked = False
        if _config._current is None:  # the first use: read the environment here, so that a
            error = _config.first_use_error()  # bad variable's traceback ends at this call
            if error is not None:
                raise error from None
        if loop is None:
            running = _running_loop()
            if running is not None:  # a running loop is never closed: create it here
                if untracked:
                    return await self._acquire_here(running, track_new(running))
                return await self._acquire_here(running)
        return await self._acquire(loop)

    async def _acquire(self, loop: asyncio.AbstractEventLoop | None) -> R:
        _check_loop(loop, f"{self.name!r}.acquire")
        running = _running(f"{self.name!r}.acquire")
        target = running if loop is None else loop
        if target.is_closed():
            raise LoopClosedError(f"cannot acquire {self.name!r}: the event loop is closed")
        if target is not running:
            return await on_loop(  # type: ignore[no-any-return]
                target, self._acquire_here, f"cannot acquire {self.name!r}"
            )
        return await self._acquire_here(running)

    async def _acquire_here(
        self, loop: asyncio.AbstractEventLoop | None = None, state: LoopState | None = None
    ) -> R:
        """``acquire()`` on the running loop ``loop``, whose ``state`` the caller may have."""
        if loop is None:  # called by ``on_loop``, on the target loop
            loop = asyncio.get_running_loop()
        spec = self._spec
        if state is None:
            state = registry.get(loop)
        if state is None or state.phase is GONE:
            state = track_new(loop)
        if state.phase is not OPEN:
            raise LoopClosedError(f"cannot acquire {self.name!r}: the event loop is closing")
        store = state.store
        if store is not None and spec in store:
            return store[spec]  # type: ignore[no-any-return]
        chain = _creating.get()
        if chain and spec in chain:
            names = " -> ".join(repr(s.name) for s in (*chain[chain.index(spec) :], spec))
            raise AcquisitionCycleError(
                f"acquiring {self.name!r} needs {self.name!r} itself ({names}): an "
                "acquire_func waits, directly or through other templates, for its own "
                "resource; create the shared part in one template and acquire it from the "
                "others"
            )
        pending = state.pending.get(spec) if state.pending else None
        if pending is None:
            if not (state.managed or state.warned_ungraceful):
                unmanaged_acquisition(loop, state, spec.name)
            result: Any = _NOTHING
            try:
                result = self._acquire_func()  # a synchronous factory finishes right here
                if (
                    type(result) in PLAIN_TYPES
                    or self._returns_resource
                    or not _isawaitable(result)
                ):
                    if registry.store(state, spec, result):
                        return result  # type: ignore[no-any-return]
                    await self._release_late(state, result)
            except BaseException:
                if result is not _NOTHING and not _isawaitable(result):
                    self._recover(state, result)  # interrupted before it was booked
                raise
            pending = asyncio.ensure_future(self._finish_creation(state, result))
            pending.add_done_callback(retrieve)
            state.pending[spec] = pending
        # shield: a waiter's cancellation (even the first one's) leaves the creation running.
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not (pending.cancelled() and state.phase is not OPEN):
                raise
        raise LoopClosedError(
            f"cannot acquire {self.name!r}: the event loop closed while it was being created"
        )

    async def _finish_creation(self, state: LoopState, creation: Awaitable[R]) -> R:
        # This task's own context: acquisitions made by the creation see the chain.
        _creating.set((*_creating.get(), self._spec))
        resource: Any = _NOTHING
        try:
            resource = await creation
            stored = registry.store(state, self._spec, resource)
        except BaseException:
            if resource is not _NOTHING:
                self._recover(state, resource)  # interrupted before it was booked
            raise
        finally:
            state.pending.pop(self._spec, None)
        if not stored:
            await self._release_late(state, resource)
        return resource  # type: ignore[no-any-return]

    def _recover(self, state: LoopState, resource: Any) -> None:
        """Book a resource whose bookkeeping an exception (a signal, Ctrl-C) interrupted.

        It is stored like any other if the loop is still open; otherwise it is forced here.
        """
        batch = registry.recover_creation(state, self._spec, resource)
        if batch is not None:
            force_batch(batch, why="its creation was interrupted while its loop was ending")

    async def _release_late(self, state: LoopState, resource: R) -> NoReturn:
        # The loop began releasing everything (its close hook, or the async-generator hook
        # during shutdown_asyncgens) while this was being created: release it too, here, on
        # the loop; the close hook waits for creations in flight.
        await release_batch(registry.adopt(state, self._spec, resource))
        raise LoopClosedError(f"cannot acquire {self.name!r}: the event loop is closing")

    # -- release and purge --------------------------------------------------------------------

    async def release(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Release the resource of ``loop`` (default: the running loop), gracefully, on it.

        A loop that holds nothing is left alone. A failing ``release_func`` is logged on the
        ``resourceloop`` logger and raised here. For a closed loop the resource is released
        forcefully; for a loop running in another thread the release runs there.

        Raises:
            TypeError: ``loop`` is not an event loop.
            RuntimeError: ``loop`` is neither running nor closed, so it cannot release.

        Call it from a coroutine; safe from any loop and any thread.

        .. versionadded:: 0.1.0
        """
        _check_loop(loop, f"{self.name!r}.release")
        running = _running(f"{self.name!r}.release")
        target = running if loop is None else loop
        state = registry.get(target)
        if state is None:
            return
        if target.is_closed():
            force_batch(registry.take(state, self._spec), why="its loop was already closed")
            return
        if target is not running:
            await on_loop(target, self._release_here, f"cannot release {self.name!r}")
            return
        await self._release_here()

    async def _release_here(self) -> None:
        state = registry.get(asyncio.get_running_loop())
        if state is None:
            return
        failures = await release_batch(registry.take(state, self._spec))
        if failures:
            raise failures[0]

    async def purge(self) -> None:
        """Release the resources of every closed, collected or abandoned loop, and wait.

        Runs one reaper pass in a short-lived thread, so the running loop is never blocked; if
        the reaper thread is mid-pass, that pass is waited for first. When this returns, every
        such loop has been released: forcefully where the loop can no longer run, gracefully on
        abandoned loops that still can. Loops that are running or whose thread is alive are left
        alone. Unlike Pyot's, this takes no lock that acquisitions wait on, so it cannot
        deadlock them.

        Call it from a coroutine; safe from any loop and any thread.

        .. versionadded:: 0.1.0
        """
        loop = _running(f"{self.name!r}.purge")
        done: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                reap()
            except BaseException as exc:  # pragma: no cover - reap() logs user failures itself
                settle_threadsafe(loop, done, exc)
            else:
                settle_threadsafe(loop, done, None)

        threading.Thread(target=run, name="resourceloop-purge", daemon=True).start()
        await done
