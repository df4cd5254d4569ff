"""``Portal``: one event loop in a daemon thread that runs coroutines for synchronous callers.

This module is the callers' side of a portal: what runs in the threads that start it, call
through it and close it (calls and ``close()`` never from the portal's own loop). A call waits
for its ``concurrent.futures.Future`` in slices (``WAIT_SLICE``) so that Ctrl-C gets in;
``start()`` and ``close()`` wait for the startup's events, in slices on the main thread. They
reach the portal's loop only through ``call_soon_threadsafe``.

What runs on the portal's thread is in ``_portal_loop`` (the base class :class:`PortalLoop`,
which owns the fields); exit and fork handling, and the default portal that :func:`portal`
returns, are in ``_portal_process``. ``resourceloop.sync`` is the public face of all three.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, final

from ._compat import get_running_loop_or_none, iscoroutinefunction
from ._errors import PortalCallError, PortalClosedError
from ._portal_loop import (
    CLOSED,
    CLOSING,
    FORKED,
    NEW,
    RUNNING,
    STARTING,
    PortalLoop,
    Startup,
    in_executor_of,
)
from ._portal_process import default_portal, install_process_hooks, release_process, remember

__all__ = [
    "WAIT_SLICE",
    "Portal",
    "check_async_callable",
    "is_async_callable",
    "portal",
    "release_at_process_end",
]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("resourceloop")

#: Seconds a portal call waits at a time, so that Ctrl-C interrupts it on every platform (a
#: plain ``Future.result()`` cannot be interrupted on Windows) and an exception raised into a
#: worker thread (``PyThreadState_SetAsyncExc``, as debuggers and test runners do) arrives.
WAIT_SLICE: Final = 0.25


def is_async_callable(func: object) -> bool:
    return iscoroutinefunction(func) or iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def check_async_callable(func: object, what: str) -> None:
    if not callable(func) or not is_async_callable(func):
        raise TypeError(
            f"{what} needs a coroutine function (async def), got {func!r}; "
            "a synchronous function can simply be called"
        )


@final
class Portal(PortalLoop):
    """One event loop in a daemon thread that runs coroutines for synchronous callers.

    The loop starts on first use (or :meth:`start`) and runs until :meth:`close`, the end of a
    ``with`` block, or interpreter exit. Calls from many threads run concurrently on it, and
    the resources they acquire through ``ResourceTemplate`` live across calls, so an
    ``aiohttp.ClientSession`` made by the first call keeps its connections for the next ones.

    Resources: starting enters a ``ResourceManager`` on the portal's loop (so its non-lazy
    templates are acquired once, up front); a ``resource_manager()`` a call enters acquires as
    usual but releases nothing when it exits, and never conflicts with another call's.
    Closing cancels the calls still running (their callers get :class:`PortalClosedError`),
    leaves the portal's manager, which releases every resource gracefully on the portal's loop,
    newest first, then shuts the loop down like ``asyncio.Runner`` and closes it.

    Lifecycle:
        * ``close()`` is idempotent; a closed portal is never restarted (a call raises
          :class:`PortalClosedError`).
        * Interpreter exit closes every running portal (``atexit``), releasing gracefully;
          so does the end of a ``multiprocessing`` or billiard child, which skips ``atexit``
          (a ``multiprocessing.util.Finalize``; see :func:`release_at_process_end`).
        * After ``os.fork()`` the child never touches the parent's portals (their thread does
          not exist there): calling one raises :class:`PortalClosedError`, closing one does
          nothing; :func:`portal` gives the child a fresh default portal.
        * Ctrl-C (or any exception) in a calling thread cancels that call's coroutine on the
          portal and is re-raised at once, without waiting for the coroutine to finish.
        * A call from a thread whose event loop is running, the portal's own included, raises
          :class:`PortalCallError` instead of blocking that loop (or deadlocking).

    Args:
        name: The name of the portal's thread (shown in thread dumps and log lines).
        loop_factory: Makes the portal's event loop, e.g. ``uvloop.new_event_loop``; default
            ``asyncio.new_event_loop``.

    Raises:
        TypeError: ``name`` is not a string or ``loop_factory`` is not callable.

    Every method may be called from any thread; :meth:`call` and :meth:`close` not from the
    portal's own loop.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        name: str = "resourceloop-portal",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Portal(name=...) must be a string, got {name!r}")
        if loop_factory is not None and not callable(loop_factory):
            raise TypeError(
                f"Portal(loop_factory=...) must be callable (e.g. asyncio.new_event_loop), "
                f"got {loop_factory!r}"
            )
        super().__init__(name, loop_factory or asyncio.new_event_loop)
        remember(self)

    # -- state --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (it may still be releasing), or this is a fork
        child's copy of a parent's portal. Read-only; safe from any thread."""
        return self._phase in (CLOSING, CLOSED, FORKED)

    @property
    def running(self) -> bool:
        """Whether the portal's loop is running and accepting calls. Safe from any thread."""
        return self._phase is RUNNING

    @property
    def name(self) -> str:
        """The name of the portal's thread."""
        return self._name

    def __enter__(self) -> Portal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- starting -----------------------------------------------------------------------------

    def start(self) -> Portal:
        """Start the portal's thread and loop now, if not yet started; wait until it runs.

        Calls start the portal by themselves; call this to pay the start-up (a thread, a loop,
        the non-lazy templates' acquisition) at a moment of your choosing. Idempotent.

        Returns:
            The portal itself.

        Raises:
            PortalClosedError: The portal was closed, or belongs to the parent of a fork.
            Exception: Entering the portal's ``ResourceManager`` failed (a non-lazy template's
                ``acquire_func`` raised): that error; the next call or ``start()`` tries again.

        Safe to call from any thread, including one running an event loop (it blocks briefly).

        .. versionadded:: 0.1.0
        """
        while True:
            with self._lock:
                state = self._phase
                if state is RUNNING:
                    return self
                if state not in {NEW, STARTING}:
                    raise PortalClosedError(self._closed_message())
                startup = self._startup
                starter: threading.Thread | None = None
                if state is NEW or startup is None:
                    startup = self._startup = Startup()
                    starter = threading.Thread(
                        target=self._thread_main, args=(startup,), name=self._name, daemon=True
                    )
                    self._thread = starter
                    self._phase = STARTING
            if starter is not None:
                starter.start()
            _wait_event(startup.event)
            if startup.error is not None:
                raise startup.error
            if self._phase is RUNNING:
                install_process_hooks(self)
                return self

    # -- calling ------------------------------------------------------------------------------

    def call(self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``await func(*args, **kwargs)`` on the portal's loop and return its result.

        Starts the portal if needed. The calling thread blocks until the coroutine finishes;
        its ``contextvars`` are copied into the call. Ctrl-C (KeyboardInterrupt) or any other
        exception raised in the calling thread meanwhile cancels the coroutine on the portal
        and is re-raised at once.

        Args:
            func: A coroutine function (``async def``), or an object whose ``__call__`` is one.
            args: Positional arguments for ``func``.
            kwargs: Keyword arguments for ``func``.

        Returns:
            What the coroutine returned; its exception is raised instead.

        Raises:
            TypeError: ``func`` is not a coroutine function.
            PortalCallError: The calling thread runs an event loop (this portal's or another).
            PortalClosedError: The portal is closed, or closed while the call ran.

        Safe to call from any thread that does not run an event loop.

        .. versionadded:: 0.1.0
        """
        check_async_callable(func, "Portal.call")
        return self._call(func, args, kwargs)

    def wrap(self, func: Callable[P, Awaitable[R]]) -> Callable[P, R]:
        """Turn a coroutine function into a blocking function that runs it on this portal.

        Usable as ``@portal.wrap``; keeps name, docstring and signature (``functools.wraps``).
        Each call behaves as :meth:`call`.

        Raises:
            TypeError: ``func`` is not a coroutine function.

        .. versionadded:: 0.1.0
        """
        check_async_callable(func, "Portal.wrap")

        @functools.wraps(func)
        def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
            return self._call(func, args, kwargs)

        return blocking

    def _call(
        self, func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        running = get_running_loop_or_none()
        if running is not None:
            raise PortalCallError(self._blocking_message(running, func))
        if self._phase is not RUNNING:
            self.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # No lock on this path (callers from many threads would queue on it): the future is
        # registered first, then the state checked, so either this call sees the portal
        # closing, or the portal's thread finds the future and fails it when it finishes.
        pending = self._pending
        pending.add(future)
        loop = self._loop
        if self._phase is not RUNNING or loop is None:
            pending.discard(future)
            raise PortalClosedError(self._closed_message())
        # One handler from the hand-off on: Ctrl-C may land while call_soon_threadsafe wakes the
        # portal (the GIL is released there, and the call may already be running on return).
        try:
            try:
                loop.call_soon_threadsafe(self._start_call, func, args, kwargs, future)
            except RuntimeError:  # its loop closed in between
                raise PortalClosedError(self._closed_message()) from None
            outcome = _result_in_slices(future)
        except BaseException:
            future.cancel()  # a no-op once it is done; else the call's coroutine is cancelled
            pending.discard(future)  # if the call never began; _start_call skips it then
            raise
        ok, value = outcome
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def _blocking_message(self, running: asyncio.AbstractEventLoop, func: object) -> str:
        if running is self._loop:
            return (
                f"cannot call {func!r} through {self!r} from the portal's own event loop: the "
                "call would wait for itself (a deadlock); await the coroutine function directly"
            )
        return (
            f"cannot call {func!r} through {self!r} from a thread whose event loop is running: "
            "it would block that loop until the call returns; await the coroutine function "
            "directly, or hand the blocking call to a worker thread with "
            "`await asyncio.to_thread(portal.call, func, ...)`"
        )

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the portal: cancel running calls, release every resource, close the loop.

        Refuses new calls at once, cancels the calls still running (their callers get
        :class:`PortalClosedError`; a call is waited for up to ``release_timeout``), leaves the
        portal's ``ResourceManager``, which releases every resource gracefully on the portal's
        loop, newest first, then shuts the loop down and closes it. Returns when that is done.
        Idempotent; on a portal never started it only marks it closed; in a fork child, a
        parent's portal is left untouched.

        Every wait of the shutdown is bounded: calls, leftover tasks, async generators and jobs
        of the portal's default executor are each waited for up to ``release_timeout`` (each
        release too), so a stuck job delays ``close()`` by that much, never forever.

        Called from sync code that the portal itself runs in its default executor (through
        ``asyncio.to_thread`` or :func:`sync_to_async`), it asks the portal to stop and returns
        at once, without waiting: the portal finishes closing once that code returns.

        Raises:
            PortalCallError: Called from the portal's own loop or thread (it would wait for
                itself); use ``loop.call_soon(...)`` of another thread, or close it from sync
                code.
            KeyboardInterrupt: A release or acquire function raised it while the portal was
                stopping (likewise SystemExit); raised to the caller of ``close()`` that stopped
                the portal, after every resource was released and the loop closed.

        Safe to call from any thread but the portal's own (its default executor's threads
        included, where it does not wait).

        .. versionadded:: 0.1.0
        """
        # The portal's own executor threads (sync code it runs through ``to_thread`` or
        # ``sync_to_async``) only ask: the portal's thread joins them before it finishes.
        own_executor = in_executor_of(self)
        while True:
            with self._lock:
                state = self._phase
                if state is NEW:
                    self._phase = CLOSED
                    return
                if state in (CLOSED, FORKED):
                    return
                if threading.current_thread() is self._thread:
                    raise PortalCallError(
                        f"cannot close {self!r} from its own thread: it would wait for itself; "
                        "close it from synchronous code in another thread"
                    )
                startup, loop = self._startup, self._loop
                closer = False
                if state is RUNNING and loop is not None:
                    self._phase = CLOSING
                    closer = True
                    try:
                        loop.call_soon_threadsafe(self._request_stop)
                    except RuntimeError:  # its loop is closing by itself
                        pass
                elif state is STARTING and own_executor:
                    self._phase = CLOSING  # _serve stops as soon as it has started
            if own_executor:
                return
            if startup is None:  # pragma: no cover - a started portal always has one
                return
            if state is STARTING:
                _wait_event(startup.event)  # then close what started (or nothing)
                continue
            _wait_event(startup.done)
            if closer:
                error, self._close_error = self._close_error, None
                if isinstance(error, (KeyboardInterrupt, SystemExit)):
                    raise error
                if error is not None:  # already logged where it happened (a release failure)
                    logger.debug("%r: %r while closing", self, error)
            return


def _result_in_slices(future: concurrent.futures.Future[Any]) -> Any:
    while True:
        try:
            return future.result(WAIT_SLICE)
        except concurrent.futures.TimeoutError:
            if future.done():  # the call's own TimeoutError (the same class on 3.11+)
                raise


def _wait_event(event: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        while not event.wait(WAIT_SLICE):
            pass
    else:
        event.wait()


def portal() -> Portal:
    """The process-wide default portal, created on first use and started on its first call.

    ``async_to_sync(portal=True)`` runs its calls here. If the default portal was closed, or
    this is a fork child of a process that used one, a fresh portal takes its place; at
    interpreter exit it is closed (its resources released gracefully) and no new one is made.

    Returns:
        The default :class:`Portal` (not necessarily started yet).

    Raises:
        PortalClosedError: The interpreter is exiting.

    Safe to call from any thread.

    .. versionadded:: 0.1.0
    """
    return default_portal(Portal)


def release_at_process_end() -> None:
    """Do now what interpreter exit does: close every portal, release what idle loops hold.

    For a process that is about to end without running ``atexit``: a worker of a pool that
    ends its children with ``os._exit``. resourceloop already does this by itself in the
    children of ``multiprocessing`` and billiard ``Process`` objects (a
    ``multiprocessing.util.Finalize`` registered in each child), and
    ``resourceloop.contrib.celery`` does it in Celery's prefork children; call it yourself
    from a pool's exit hook that resourceloop does not know about (billiard's
    ``Pool(on_process_exit=...)``, for example, since billiard's pool workers skip finalizers).

    Every portal of this process is closed, releasing its resources gracefully on its loop;
    then loops that are neither running nor closed get their resources released on them.
    Afterwards :func:`portal` refuses to make a new default portal (as at exit). Never
    raises; idempotent.

    Call it from sync code in the process's main thread or any thread that runs no event
    loop (a portal is waited for, as by :meth:`Portal.close`).

    .. versionadded:: 0.1.0
    """
    release_process()
