"""The seed's face: ``ResourceTemplate``, ``ResourceManager`` and their registries.

A template describes how to make and free one kind of resource; each event loop that asks for it
gets its own copy, created on that loop the first time it is awaited and released on that loop
when the loop leaves a ``ResourceManager``, closes, or is abandoned (see ``_runtime``).

Where this differs from Pyot's ``pyot.core.resources``:
    * The first acquisition on a loop never hops through a thread pool and takes no
      process-wide lock across an ``await``; creations on different loops never contend.
    * ``purge()`` cannot deadlock: Pyot's purge runs inside its acquisition lock and deadlocks
      on the 32nd acquisition once a closed loop exists.
    * ``acquire()`` returns the resource, as Pyot's implementation does (its page says ``Self``).
    * Releasing a loop that holds nothing is a no-op, never an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence, Set
from types import TracebackType
from typing import Any, Generic, TypeVar, final, overload

from ._compat import ExceptionGroup, get_running_loop_or_none, iscoroutinefunction
from ._errors import LoopClosedError
from ._registry import READY_ATTR, LoopState, registry
from ._release import drop_ready, release_forcefully, release_gracefully
from ._runtime import reap, track, warn_if_ungraceful

__all__ = [
    "ResourceManager",
    "ResourceTemplate",
    "resource_managed_loops",
    "resource_manager",
    "resource_templates",
]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])

#: The running loop or None, typed loosely: the hot path reads an attribute that only some
#: loops have (mypy's view of ``_get_running_loop`` also differs between Python versions).
_running_loop: Callable[[], Any] = get_running_loop_or_none

#: Loops whose resources an owner keeps for its own lifetime: the portal of ``resourceloop.sync``
#: adds its loop once its own manager is active there. A manager entered on such a loop acquires
#: like any other, but its exit releases nothing and it never conflicts with the owner's manager
#: or another call's. Weak, so an entry ends with its loop; written only by the owner.
_owned_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

#: How often a cross-thread acquisition checks that its target loop has not closed meanwhile
#: (only matters for a loop closed without running our close hook; the hook fails waiters at once).
_REMOTE_LIVENESS_CHECK = 0.1


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
        TypeError: A function argument is not callable, or ``name`` is not a string.

    The template must not be used with locks inside ``acquire_func``/``release_func`` that other
    acquisitions hold: those functions run on the loop like any other coroutine.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_acquire_func",
        "_force_release_func",
        "_lazy",
        "_name",
        "_release_func",
    )

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
            raise TypeError(f"name must be a string, got {name!r}")
        self._acquire_func = acquire_func
        self._release_func = release_func
        self._force_release_func = force_release_func
        self._name: str = name
        self._lazy = bool(lazy)
        registry.add_template(self)

    @property
    def acquire_func(self) -> Callable[[], R | Awaitable[R]]:
        """The function that creates a loop's resource, as given; read-only."""
        return self._acquire_func

    @property
    def release_func(self) -> Callable[[R], Any] | None:
        """The function that releases a resource on its loop, or ``None``; read-only."""
        return self._release_func

    @property
    def force_release_func(self) -> Callable[[R], Any] | None:
        """The synchronous release used when the loop cannot run, or ``None``; read-only."""
        return self._force_release_func

    @property
    def name(self) -> str:
        """The name shown in warnings, log lines, ``stats().resources_live`` and errors."""
        return self._name

    @property
    def lazy(self) -> bool:
        """Whether a ``ResourceManager`` skips this template on entry (see ``lazy=``)."""
        return self._lazy

    def __repr__(self) -> str:
        lazy = " lazy" if self._lazy else ""
        return f"<ResourceTemplate {self._name!r}{lazy}>"

    # -- acquire ------------------------------------------------------------------------------

    # The hot path: the running loop already holds the resource. Its cache lives on the loop
    # instance (see ``_cache_ready``) and is read with one attribute and one dict lookup, no
    # lock; the attribute is spelled out because a literal attribute lookup is the fastest
    # (it is ``READY_ATTR``, which ``_registry`` defines and the rest of the code uses).
    # Before 3.12 awaiting a completed future is cheaper than creating and running a
    # coroutine, so ``acquire`` returns a cached one; from 3.12 on coroutines are the cheaper
    # of the two, so ``acquire`` is a coroutine and the cache holds the resource itself.
    if sys.version_info < (3, 12):

        def acquire(self, loop: asyncio.AbstractEventLoop | None = None) -> Awaitable[R]:
            """Return the resource of ``loop`` (default: the running loop), creating it once.

            Concurrent first calls on one loop share a single creation; cancelling a waiter
            never cancels it. If ``acquire_func`` raises, every waiter gets the error, nothing
            is stored and the next call tries again. With an explicit ``loop`` running in
            another thread, the resource is created (or found) there and the result awaited
            here.

            Returns an awaitable: use it with ``await``, ``asyncio.gather``,
            ``asyncio.wait_for``, ``asyncio.shield`` or ``asyncio.ensure_future``. Before
            Python 3.12, once the loop holds the resource it is an already-completed future
            cached on the loop (cheaper to await than a coroutine there), which
            ``asyncio.create_task`` and ``run_coroutine_threadsafe`` refuse: wrap the call in
            an ``async def`` for those.

            Raises:
                TypeError: ``loop`` is not an event loop.
                LoopClosedError: The loop is closed or closing.
                RuntimeError: No loop is running, or ``loop`` is neither the running loop nor
                    running in another thread.

            Call it from a coroutine; safe from any loop and any thread.

            .. versionadded:: 0.1.0
            """
            if loop is None:
                try:
                    return _running_loop()._resourceloop_ready[self]  # type: ignore[no-any-return]
                except (KeyError, AttributeError):  # not cached yet, or no running loop
                    pass
            return self._acquire(loop)

    else:

        async def acquire(self, loop: asyncio.AbstractEventLoop | None = None) -> R:
            """Return the resource of ``loop`` (default: the running loop), creating it once.

            Concurrent first calls on one loop share a single creation; cancelling a waiter
            never cancels it. If ``acquire_func`` raises, every waiter gets the error, nothing
            is stored and the next call tries again. With an explicit ``loop`` running in
            another thread, the resource is created (or found) there and the result awaited
            here.

            Returns an awaitable (a coroutine from Python 3.12 on; see the note on earlier
            versions in the documentation): use it with ``await``, ``asyncio.gather``,
            ``asyncio.wait_for``, ``asyncio.shield`` or ``asyncio.ensure_future``.

            Raises:
                TypeError: ``loop`` is not an event loop.
                LoopClosedError: The loop is closed or closing.
                RuntimeError: No loop is running, or ``loop`` is neither the running loop nor
                    running in another thread.

            Call it from a coroutine; safe from any loop and any thread.

            .. versionadded:: 0.1.0
            """
            if loop is None:
                try:
                    return _running_loop()._resourceloop_ready[self]  # type: ignore[no-any-return]
                except (KeyError, AttributeError):  # not cached yet, or no running loop
                    pass
            return await self._acquire(loop)

    async def _acquire(self, loop: asyncio.AbstractEventLoop | None) -> R:
        _check_loop(loop, f"{self._name!r}.acquire")
        running = asyncio.get_running_loop()
        target = running if loop is None else loop
        if target.is_closed():
            raise LoopClosedError(f"cannot acquire {self._name!r}: the event loop is closed")
        if target is not running:
            return await _on_loop(  # type: ignore[no-any-return]
                target, self._acquire_here, f"cannot acquire {self._name!r}"
            )
        return await self._acquire_here()

    async def _acquire_here(self) -> R:
        loop = asyncio.get_running_loop()
        state = track(loop)
        if state.closing:
            raise LoopClosedError(f"cannot acquire {self._name!r}: the event loop is closing")
        resources = state.resources
        if self in resources:
            resource: R = resources[self]
            _cache_ready(loop, self, resource)
            return resource
        pending = state.pending.get(self)
        if pending is None:
            if not state.managed:
                warn_if_ungraceful(state, self._name)
            result = self._acquire_func()  # a synchronous factory finishes right here
            if not inspect.isawaitable(result):
                return await self._stored(loop, state, result)
            pending = asyncio.ensure_future(self._finish_creation(loop, state, result))
            pending.add_done_callback(_retrieve)
            state.pending[self] = pending
        # shield: a waiter's cancellation (even the first one's) leaves the creation running.
        return await asyncio.shield(pending)

    async def _finish_creation(
        self, loop: asyncio.AbstractEventLoop, state: LoopState, creation: Awaitable[R]
    ) -> R:
        try:
            resource = await creation
        finally:
            state.pending.pop(self, None)
        return await self._stored(loop, state, resource)

    async def _stored(self, loop: asyncio.AbstractEventLoop, state: LoopState, resource: R) -> R:
        if not registry.store(state, self, resource):
            # The loop began releasing everything (the async-generator hook runs during
            # shutdown_asyncgens) while this was being created: release it too, here, on the
            # loop, since nobody else will.
            await release_gracefully(state, [(self, resource)])
            raise LoopClosedError(f"cannot acquire {self._name!r}: the event loop is closing")
        _cache_ready(loop, self, resource)
        return resource

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
        _check_loop(loop, f"{self._name!r}.release")
        running = asyncio.get_running_loop()
        target = running if loop is None else loop
        state = registry.get(target)
        if state is None:
            return
        if target.is_closed():
            found, resource = registry.take(state, self)
            if found:
                drop_ready(target, self)
                release_forcefully(state, [(self, resource)], why="its loop was already closed")
            return
        if target is not running:
            await _on_loop(target, self._release_here, f"cannot release {self._name!r}")
            return
        await self._release_here()

    async def _release_here(self) -> None:
        loop = asyncio.get_running_loop()
        state = registry.get(loop)
        if state is None:
            return
        found, resource = registry.take(state, self)
        if not found:
            return
        failures = await release_gracefully(state, [(self, resource)])
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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            try:
                reap()
            except BaseException as exc:  # pragma: no cover - reap() logs user failures itself
                _settle(loop, done, exc)
            else:
                _settle(loop, done, None)

        threading.Thread(target=run, name="resourceloop-purge", daemon=True).start()
        await done


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], exc: BaseException | None
) -> None:
    def settle() -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while we worked: nobody is waiting any more
        pass


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled; mark the failure as seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()


def _cache_ready(
    loop: asyncio.AbstractEventLoop, template: ResourceTemplate[Any], resource: Any
) -> None:
    """Cache ``resource`` on the loop instance for the hot path of ``acquire``.

    Before 3.12 the cache holds a completed future (what ``acquire`` returns), from 3.12 the
    resource itself. It lives on the loop, not in the registry: a future refers to its loop,
    and so may a resource, and stored in the registry's ``WeakKeyDictionary`` either would
    keep its own key alive. A loop class without ``__dict__`` gets no cache, only a slower
    ``acquire``.
    """
    try:
        cache = loop.__dict__.setdefault(READY_ATTR, {})
    except AttributeError:
        return
    if sys.version_info < (3, 12):
        ready = loop.create_future()
        ready.set_result(resource)
        cache[template] = ready
    else:
        cache[template] = resource


async def _on_loop(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Coroutine[Any, Any, Any]], what: str
) -> Any:
    """Run ``work()`` on ``loop``, which runs in another thread, and await its result here.

    ``what`` starts every error message (it names the template).
    """
    if not loop.is_running():
        raise RuntimeError(
            f"{what}: the given event loop is neither the running loop nor running in another "
            "thread, so nothing can run on it; call this from a coroutine running on that loop "
            "instead"
        )
    coro = work()
    try:
        remote = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # it closed in between
        coro.close()
        raise LoopClosedError(
            f"{what}: the event loop closed before it could run the call"
        ) from None
    state = registry.get(loop)
    if state is not None:
        state.remote.add(remote)  # the close hook fails it if the loop closes first
    try:
        waiter = asyncio.wrap_future(remote)
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=_REMOTE_LIVENESS_CHECK)
            if done:
                if waiter.cancelled():
                    # Cancelled over there, not here (our own cancellation raises out of the
                    # wait above): that loop is shutting down, as asyncio.run() does on exit.
                    # A CancelledError here would look like this task's own cancellation.
                    raise LoopClosedError(
                        f"{what}: the event loop cancelled the call before it finished: it is "
                        "shutting down"
                    )
                return waiter.result()
            if loop.is_closed():  # closed without our hook: the call will never run
                # Fail it, not cancel it: asyncio would pass a cancellation on to the closed
                # loop, and concurrent.futures would log its "Event loop is closed" error.
                waiter.add_done_callback(_retrieve)  # nobody awaits it any more
                try:
                    remote.set_exception(LoopClosedError("the event loop closed"))
                except concurrent.futures.InvalidStateError:  # it finished in between
                    pass
                raise LoopClosedError(f"{what}: the event loop closed before it could run the call")
    finally:
        if state is not None:
            state.remote.discard(remote)


# -- ResourceManager ---------------------------------------------------------------------------


@final
class ResourceManager:
    """Acquire every template's resource for the running loop on entry; release them on exit.

    Use as ``async with ResourceManager():`` or decorate a coroutine function with
    :meth:`as_decorator`. Entering marks the loop in ``resource_managed_loops`` and acquires
    every registered template except the ``lazy`` ones; leaving releases everything the loop
    acquired meanwhile (lazy ones included), newest first, on the loop.

    Args:
        exist_ok: If another manager is already active on this loop, do nothing on entry and
            exit instead of raising.

    Raises:
        RuntimeError: On entry, when another manager is active on the loop and ``exist_ok`` is
            false, or when no loop is running.

    A failing release never stops the others: all are attempted, then the failures are raised
    together as an ``ExceptionGroup``, unless the body raised, in which case they are logged and
    the body's exception propagates.

    An instance belongs to the loop it is entered on and may be entered again after it exits.
    "Every registered template" means every live template in the process, including those
    other modules declared: libraries should mark optional templates ``lazy=True``.

    On the loop of a :class:`resourceloop.sync.Portal` the portal's own manager is active for
    the portal's lifetime; a manager entered there by a call acquires as usual, but its exit
    releases nothing and it never raises because another manager is active: the resources stay
    for the next call and are released when the portal closes.

    Construct it anywhere: the loop is looked up on entry, not at construction. Enter and leave
    it from coroutines running on the loop it manages.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_active", "_exist_ok", "_loop", "_state")

    def __init__(self, exist_ok: bool = False) -> None:
        self._exist_ok = bool(exist_ok)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: LoopState | None = None
        self._active = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this manager was entered on.

        Raises:
            RuntimeError: The manager has never been entered.
        """
        if self._loop is None:
            raise RuntimeError("this ResourceManager has not been entered yet, so it has no loop")
        return self._loop

    @property
    def exist_ok(self) -> bool:
        """Whether entering on a loop that already has an active manager is a no-op."""
        return self._exist_ok

    def __repr__(self) -> str:
        where = "" if self._loop is None else f" loop={self._loop!r}"
        return f"<ResourceManager active={self._active} exist_ok={self._exist_ok}{where}>"

    async def __aenter__(self) -> ResourceManager:
        loop = asyncio.get_running_loop()
        if self._active:
            raise RuntimeError("this ResourceManager is already active; create another one")
        if loop in _owned_loops:
            # A portal's loop: its owner's manager holds the resources until the portal closes.
            self._loop = loop
            self._state = None  # so __aexit__ releases nothing
            for template in registry.templates():
                if not template.lazy:
                    await template.acquire()
            return self
        if loop.is_closed():  # pragma: no cover - a running loop is never closed
            raise LoopClosedError("cannot manage a closed event loop")
        state = track(loop)
        if state.closing:
            raise LoopClosedError("cannot manage resources of a closing event loop")
        self._loop = loop
        if not registry.set_managed(state, True):
            if self._exist_ok:
                self._state = None
                return self
            raise RuntimeError(
                "another ResourceManager is already active on this event loop; nest it with "
                "ResourceManager(exist_ok=True) or leave the outer one first"
            )
        self._state = state
        self._active = True
        try:
            for template in registry.templates():
                if not template.lazy:
                    await template.acquire()
        except BaseException:
            await self._release_all(loop, state, body_failed=True)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return  # exist_ok on an already-managed loop: the outer manager owns the work
        await self._release_all(self.loop, state, body_failed=exc is not None)

    async def _release_all(
        self, loop: asyncio.AbstractEventLoop, state: LoopState, *, body_failed: bool
    ) -> None:
        self._state = None
        self._active = False
        try:
            taken = registry.take_all(state, closing=False)
            try:
                failures = await release_gracefully(state, taken)
            except BaseException:
                # Custody: what an interruption (KeyboardInterrupt, SystemExit) left behind is
                # still ours to release, never lost.
                release_forcefully(state, taken, why="its release was interrupted")
                raise
        finally:
            registry.set_managed(state, False)
        if failures and not body_failed:
            raise ExceptionGroup(
                f"{len(failures)} resource release(s) failed on leaving the ResourceManager",
                failures,
            )

    async def acquire(self) -> ResourceManager:
        """Enter the manager: the explicit form of ``async with manager:``.

        Returns:
            The manager itself.

        Raises:
            RuntimeError: Another manager is active on the loop (and ``exist_ok`` is false),
                or this one is already active.
            LoopClosedError: The loop is closing.

        Call it from a coroutine on the loop whose resources it should manage.
        """
        return await self.__aenter__()

    async def release(self) -> None:
        """Leave the manager: release what the loop acquired, as a body that did not raise.

        Raises:
            ExceptionGroup: One or more release functions raised; every release was attempted.

        Call it from a coroutine on the loop the manager was entered on.
        """
        await self.__aexit__(None, None, None)

    @classmethod
    def as_decorator(cls, func: F) -> F:
        """Run each call of the coroutine function ``func`` inside a fresh manager.

        Keeps the name, docstring and signature (``functools.wraps``).

        Raises:
            TypeError: ``func`` is not a coroutine function.

        .. versionadded:: 0.1.0
        """
        if not iscoroutinefunction(func):
            raise TypeError(
                f"ResourceManager.as_decorator needs an async def function, got {func!r}; "
                "for a synchronous function use `async with resource_manager():` inside it"
            )

        @functools.wraps(func)
        async def managed(*args: Any, **kwargs: Any) -> Any:
            async with cls():
                return await func(*args, **kwargs)

        return managed  # type: ignore[return-value]


resource_manager = ResourceManager
"""Alias of :class:`ResourceManager`, as on Pyot's page."""


# -- live views --------------------------------------------------------------------------------


@final
class _ManagedLoops(Set[asyncio.AbstractEventLoop]):
    """The event loops inside an active ``ResourceManager`` right now: a live, read-only set."""

    __slots__ = ()

    def __contains__(self, loop: object) -> bool:
        if not isinstance(loop, asyncio.AbstractEventLoop):
            return False
        state = registry.get(loop)
        return state is not None and state.managed and not state.discarded

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter(registry.managed_loops())

    def __len__(self) -> int:
        return len(registry.managed_loops())

    def __repr__(self) -> str:
        return f"resource_managed_loops({set(self)!r})"


@final
class _Templates(Sequence[ResourceTemplate[Any]]):
    """Every live ``ResourceTemplate``, in creation order: a live, read-only list.

    It refers to templates weakly: a template referenced nowhere else disappears from it.
    """

    __slots__ = ()

    @overload
    def __getitem__(self, index: int) -> ResourceTemplate[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[ResourceTemplate[Any]]: ...
    def __getitem__(
        self, index: int | slice
    ) -> ResourceTemplate[Any] | list[ResourceTemplate[Any]]:
        return registry.templates()[index]

    def __iter__(self) -> Iterator[ResourceTemplate[Any]]:
        return iter(registry.templates())

    def __len__(self) -> int:
        return len(registry.templates())

    def __contains__(self, template: object) -> bool:
        return any(t is template for t in registry.templates())

    def __repr__(self) -> str:
        return f"resource_templates({registry.templates()!r})"


resource_managed_loops: Set[asyncio.AbstractEventLoop] = _ManagedLoops()
"""Live set of the event loops with an active ``ResourceManager``."""

resource_templates: Sequence[ResourceTemplate[Any]] = _Templates()
"""Live list of the ``ResourceTemplate`` objects alive in this process, oldest first."""
