"""``async_to_sync`` and ``sync_to_async``: call async code from sync code and back.

The seed example's helpers, compatible with Pyot's ``pyot.utils.sync``, and a portal.

Two ways to run async code from sync code:
    * **A fresh loop per call** (``@async_to_sync``, the default, as in Pyot): each call runs on
      a new event loop that is closed when the call returns (as ``asyncio.run`` does), so every
      resource the call acquired is released gracefully, on that loop, just before it closes:
      resourceloop's close hook does it, with or without a ``resource_manager``. Nothing is
      shared between calls, so nothing (no connection) is reused either.
    * **A portal** (``@async_to_sync(portal=True)``, or a :class:`Portal` of your own): one event
      loop running in a daemon thread, started on first use and shared by every sync caller in
      the process. Calls from many threads run concurrently on it, and the resources they
      acquire (an ``aiohttp.ClientSession`` and its connection pool) live across calls until
      the portal closes: on ``close()``, on leaving ``with Portal():``, or at interpreter exit.
      There they are released gracefully, on the portal's loop, exactly once.

Where this differs from Pyot's:
    * ``async_to_sync`` works from a thread that already runs an event loop: the call then runs
      on a fresh loop in a short-lived worker thread (Pyot's ``asyncio.run`` raises). The
      calling loop is blocked until it returns, as with any blocking call; from async code,
      ``await`` the coroutine function directly instead. (A portal call refuses, see below.)
    * ``sync_to_async`` refuses coroutine functions and non-callables with ``TypeError``, looks
      the loop up when called (not ``get_event_loop()``) and runs the function in the loop's
      default executor with the caller's ``contextvars``.
    * Both are typed with ``ParamSpec``: the wrapper keeps the wrapped function's parameters.

Managers inside portal calls: the portal enters a ``ResourceManager`` on its loop when it
starts and leaves it when it closes. A ``resource_manager()`` that a call enters (as the seed
example does) acquires as usual, but its exit releases nothing and it never raises because
another call's manager is active: the resources stay for the next call.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar, final, overload

from . import _config
from ._compat import block_signals_in_this_thread, get_running_loop_or_none, iscoroutinefunction
from ._errors import PortalCallError, PortalClosedError
from ._manager import owned_loops as _owned_loops
from .resources import ResourceManager

__all__ = [
    "Portal",
    "PortalCallError",
    "PortalClosedError",
    "async_to_sync",
    "portal",
    "sync_to_async",
]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("resourceloop")

#: Seconds a portal call waits at a time, so that Ctrl-C interrupts it on every platform (a
#: plain ``Future.result()`` cannot be interrupted on Windows) and an exception raised into a
#: worker thread (``PyThreadState_SetAsyncExc``, as debuggers and test runners do) arrives.
_WAIT_SLICE: Final = 0.25


def _is_async_callable(func: object) -> bool:
    return iscoroutinefunction(func) or iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def _check_async_callable(func: object, what: str) -> None:
    if not callable(func) or not _is_async_callable(func):
        raise TypeError(
            f"{what} needs a coroutine function (async def), got {func!r}; "
            "a synchronous function can simply be called"
        )


# -- the portal ----------------------------------------------------------------------------------

_State = Literal["new", "starting", "running", "closing", "closed", "forked"]


class _Startup:
    """One attempt to start a portal's thread: the waiters' event and the failure, if any."""

    __slots__ = ("done", "error", "event")

    def __init__(self) -> None:
        self.event = threading.Event()  # set once the loop runs, or the start failed
        self.error: BaseException | None = None
        self.done = threading.Event()  # set once the thread has closed its loop


@final
class Portal:
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
        * Interpreter exit closes every running portal (``atexit``), releasing gracefully.
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

    __slots__ = (
        "__weakref__",
        "_calls",
        "_close_error",
        "_lock",
        "_loop",
        "_loop_factory",
        "_name",
        "_pending",
        "_startup",
        "_state",
        "_stop",
        "_stopping",
        "_thread",
    )

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
        self._name = name
        self._loop_factory = loop_factory or asyncio.new_event_loop
        # Guarded by _lock: writes of _state, _loop, _thread, _startup (calls read them without
        # it). Held for a few assignments and one call_soon_threadsafe at a time, never while
        # waiting or calling user code.
        self._lock = threading.Lock()
        self._state: _State = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._startup: _Startup | None = None
        # Owned by the portal's loop (touched only on its thread):
        self._stopping = False
        self._stop: asyncio.Event | None = None
        self._calls: dict[asyncio.Task[Any], concurrent.futures.Future[Any]] = {}
        # Futures of calls submitted but not started; added by callers, removed on the loop
        # (set.add and set.discard are atomic), failed by the portal's thread as it finishes.
        self._pending: set[concurrent.futures.Future[Any]] = set()
        # Written by the portal's thread before it sets its startup's done; read after.
        self._close_error: BaseException | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (it may still be releasing), or this is a fork
        child's copy of a parent's portal. Read-only; safe from any thread."""
        return self._state in ("closing", "closed", "forked")

    @property
    def running(self) -> bool:
        """Whether the portal's loop is running and accepting calls. Safe from any thread."""
        return self._state == "running"

    @property
    def name(self) -> str:
        """The name of the portal's thread."""
        return self._name

    def __repr__(self) -> str:
        calls = len(self._calls)
        return f"<Portal {self._name!r} {self._state} calls={calls}>"

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
                state = self._state
                if state == "running":
                    return self
                if state not in {"new", "starting"}:
                    raise PortalClosedError(self._closed_message())
                startup = self._startup
                starter: threading.Thread | None = None
                if state == "new" or startup is None:
                    startup = self._startup = _Startup()
                    starter = threading.Thread(
                        target=self._thread_main, args=(startup,), name=self._name, daemon=True
                    )
                    self._thread = starter
                    self._state = "starting"
            if starter is not None:
                starter.start()
            _wait_event(startup.event)
            if startup.error is not None:
                raise startup.error
            if self._state == "running":
                _install_process_hooks(self)
                return self

    def _closed_message(self) -> str:
        if self._state == "forked":
            return (
                f"{self!r} belongs to the parent process: its thread does not exist after "
                "os.fork(); create a new Portal in the child, or use resourceloop.sync.portal()"
            )
        return (
            f"{self!r} is closed; create a new Portal, or use resourceloop.sync.portal() (and "
            "async_to_sync(portal=True)), which replaces a closed default portal"
        )

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
        _check_async_callable(func, "Portal.call")
        return self._call(func, args, kwargs)

    def wrap(self, func: Callable[P, Awaitable[R]]) -> Callable[P, R]:
        """Turn a coroutine function into a blocking function that runs it on this portal.

        Usable as ``@portal.wrap``; keeps name, docstring and signature (``functools.wraps``).
        Each call behaves as :meth:`call`.

        Raises:
            TypeError: ``func`` is not a coroutine function.

        .. versionadded:: 0.1.0
        """
        _check_async_callable(func, "Portal.wrap")

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
        if self._state != "running":
            self.start()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # No lock on this path (callers from many threads would queue on it): the future is
        # registered first, then the state checked, so either this call sees the portal
        # closing, or the portal's thread finds the future and fails it when it finishes.
        pending = self._pending
        pending.add(future)
        loop = self._loop
        if self._state != "running" or loop is None:
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

    # -- the portal's loop (everything below runs on its thread) -------------------------------

    def _start_call(
        self,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: concurrent.futures.Future[Any],
    ) -> None:
        self._pending.discard(future)
        if future.cancelled():  # the caller gave up before the call began
            return
        loop = self._loop
        if self._stopping or loop is None:
            _settle(future, (False, PortalClosedError(self._closed_message())))
            return
        task = loop.create_task(_invoke(func, args, kwargs))
        self._calls[task] = future
        task.add_done_callback(functools.partial(self._finish_call, future))
        future.add_done_callback(functools.partial(_cancel_on_caller_exit, loop, task))

    def _finish_call(self, future: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
        self._calls.pop(task, None)
        if task.cancelled():
            error: BaseException
            if self._stopping:
                error = PortalClosedError(f"{self!r} closed while the call was running")
            else:
                error = asyncio.CancelledError()
            _settle(future, (False, error))
        else:
            _settle(future, task.result())

    def _thread_main(self, startup: _Startup) -> None:
        block_signals_in_this_thread()  # Ctrl-C is for the callers' threads
        loop: asyncio.AbstractEventLoop | None = None
        try:
            loop = self._loop_factory()
            main = loop.create_task(self._serve(loop, startup))
            self._run_until_done(loop, main)
        except BaseException as exc:  # the factory or the portal's own machinery failed
            self._record(exc)
        finally:
            try:
                if loop is not None:
                    self._shut_down(loop)
            finally:
                self._finish_thread(startup)

    def _run_until_done(self, loop: asyncio.AbstractEventLoop, main: asyncio.Future[Any]) -> None:
        """Run ``main`` to the end, resuming the loop when a BaseException escapes it.

        KeyboardInterrupt and SystemExit raised in a task (a release function that raises
        them) leave ``run_until_complete`` at once; the portal's shutdown must still finish.
        """
        while True:
            try:
                loop.run_until_complete(main)
                return
            except BaseException as exc:
                self._record(exc)
                if main.done():
                    return

    def _record(self, exc: BaseException) -> None:
        # Only what escapes the loop while it stops is raised by close(); before that, a
        # KeyboardInterrupt or SystemExit of a task already reached the call that awaited it.
        if not self._stopping:
            logger.debug("%r: %r escaped a task on the portal's loop", self, exc)
        elif self._close_error is None:
            self._close_error = exc

    async def _serve(self, loop: asyncio.AbstractEventLoop, startup: _Startup) -> None:
        self._stop = asyncio.Event()
        owner = ResourceManager()
        try:
            await owner.__aenter__()
        except BaseException as exc:
            startup.error = exc  # the next call tries again, with a new thread and loop
            with self._lock:
                self._state = "new"
                self._startup = None
            startup.event.set()
            return
        _owned_loops.add(loop)
        with self._lock:
            self._loop = loop
            if self._state == "starting":
                self._state = "running"
        startup.event.set()
        try:
            await self._stop.wait()
        finally:
            self._stopping = True
            with self._lock:
                if self._state == "running":  # stopped by something else than close()
                    self._state = "closing"
            try:
                await self._cancel_calls()
            finally:
                try:
                    await owner.__aexit__(None, None, None)
                except Exception:  # every failed release is logged and counted already
                    pass
                finally:
                    _owned_loops.discard(loop)

    def _request_stop(self) -> None:
        self._stopping = True
        if self._stop is not None:
            self._stop.set()

    async def _cancel_calls(self) -> None:
        calls = set(self._calls)
        if not calls:
            return
        for task in calls:
            task.cancel()
        # Bounded: a call that ignores cancellation must not keep the portal from closing.
        await asyncio.wait(calls, timeout=_config.current().release_timeout)

    def _shut_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """Finish as ``asyncio.Runner.close`` does, then close the loop (its close hook
        releases anything acquired after the portal's manager exited)."""
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                gathered = asyncio.wait(leftovers, timeout=_config.current().release_timeout)
                self._run_until_done(loop, loop.create_task(gathered))
            for task in leftovers:
                if not task.done():
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
            self._run_until_done(loop, loop.create_task(loop.shutdown_asyncgens()))
            self._run_until_done(loop, loop.create_task(loop.shutdown_default_executor()))
        finally:
            try:
                loop.close()
            except BaseException as exc:
                self._record(exc)

    def _finish_thread(self, startup: _Startup) -> None:
        failed_to_start = not startup.event.is_set()  # the loop factory failed
        with self._lock:
            # After a failed start, a newer start may already run its own thread: then the
            # state, the calls and the pending futures are that thread's, not ours.
            mine = self._thread is threading.current_thread()
            if mine:
                self._loop = None
                if failed_to_start or startup.error is not None:
                    self._state = "new"
                    self._startup = None
                elif self._state in ("running", "closing", "starting"):
                    self._state = "closed"
        if mine and startup.error is None and not failed_to_start:
            calls, self._calls = self._calls, {}
            for future in calls.values():  # they ignored cancellation: tell their callers
                error = PortalClosedError(f"{self!r} closed while the call ran")
                _settle(future, (False, error))
            # Calls submitted while the loop shut down, whose callback never ran: the state is
            # final now, so no new one can appear after this snapshot (see ``_call``).
            for future in list(self._pending):
                self._pending.discard(future)
                error = PortalClosedError(f"{self!r} closed before the call ran")
                _settle(future, (False, error))
        if failed_to_start:
            startup.error = self._close_error or PortalClosedError("the portal failed to start")
            self._close_error = None
            startup.event.set()
        startup.done.set()

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the portal: cancel running calls, release every resource, close the loop.

        Refuses new calls at once, cancels the calls still running (their callers get
        :class:`PortalClosedError`; a call is waited for up to ``release_timeout``), leaves the
        portal's ``ResourceManager``, which releases every resource gracefully on the portal's
        loop, newest first, then shuts the loop down and closes it. Returns when that is done.
        Idempotent; on a portal never started it only marks it closed; in a fork child, a
        parent's portal is left untouched.

        Raises:
            PortalCallError: Called from the portal's own loop or thread (it would wait for
                itself); use ``loop.call_soon(...)`` of another thread, or close it from sync
                code.
            KeyboardInterrupt: A release or acquire function raised it while the portal was
                stopping (likewise SystemExit); raised to the caller of ``close()`` that stopped
                the portal, after every resource was released and the loop closed.

        Safe to call from any thread but the portal's own.

        .. versionadded:: 0.1.0
        """
        while True:
            with self._lock:
                state = self._state
                if state == "new":
                    self._state = "closed"
                    return
                if state in ("closed", "forked"):
                    return
                if threading.current_thread() is self._thread:
                    raise PortalCallError(
                        f"cannot close {self!r} from its own thread: it would wait for itself; "
                        "close it from synchronous code in another thread"
                    )
                startup, loop = self._startup, self._loop
                closer = False
                if state == "running" and loop is not None:
                    self._state = "closing"
                    closer = True
                    try:
                        loop.call_soon_threadsafe(self._request_stop)
                    except RuntimeError:  # its loop is closing by itself
                        pass
            if startup is None:  # pragma: no cover - a started portal always has one
                return
            if state == "starting":
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


async def _invoke(
    func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """Run one call; its exception (KeyboardInterrupt and SystemExit too) is its outcome.

    Returned rather than raised, so that KeyboardInterrupt or SystemExit raised by a call
    reaches its caller and does not stop the portal's loop (asyncio lets those two escape
    ``run_until_complete``). Only cancellation stays an exception, so the task is cancelled.
    """
    try:
        return True, await func(*args, **kwargs)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return False, exc


def _settle(future: concurrent.futures.Future[Any], outcome: tuple[bool, Any]) -> None:
    try:
        if future.set_running_or_notify_cancel():  # False: the caller cancelled, nobody waits
            future.set_result(outcome)
    except (RuntimeError, concurrent.futures.InvalidStateError):  # settled already
        pass


def _cancel_on_caller_exit(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], future: concurrent.futures.Future[Any]
) -> None:
    # Runs in the thread that completed the future: the portal's (nothing to do, the task is
    # done) or the caller's, after Ctrl-C (cancel the task over there).
    if future.cancelled() and not task.done():
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the portal's loop closed meanwhile: the task is gone with it
            pass


def _result_in_slices(future: concurrent.futures.Future[Any]) -> Any:
    while True:
        try:
            return future.result(_WAIT_SLICE)
        except concurrent.futures.TimeoutError:
            if future.done():  # the call's own TimeoutError (the same class on 3.11+)
                raise


def _wait_event(event: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():
        while not event.wait(_WAIT_SLICE):
            pass
    else:
        event.wait()


# -- the default portal, exit and fork ------------------------------------------------------------

_default: Portal | None = None
_default_lock = threading.Lock()
_exiting = False
_exit_hook_installed = False
_fork_hook_installed = False
#: Portals started in this process, for exit and fork; written under _default_lock.
_portals: weakref.WeakSet[Portal] = weakref.WeakSet()
#: Portals a fork child inherited from its parent: referenced forever, never touched.
_forgotten: list[object] = []


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
    global _default
    current = _default
    if current is not None and current._state in ("new", "starting", "running"):
        return current
    with _default_lock:
        if _exiting:
            raise PortalClosedError(
                "the interpreter is exiting: the default portal is closed and no new one starts"
            )
        current = _default
        if current is None or current.closed:
            current = _default = Portal(name="resourceloop-portal")
        return current


def _install_process_hooks(started: Portal) -> None:
    """Remember ``started`` for exit and fork; register the handlers once.

    Called after the portal's loop runs, so our exit handler is registered after the runtime's
    and runs before it (atexit runs handlers last-in, first-out): portals close while the
    reaper still runs.
    """
    global _exit_hook_installed, _fork_hook_installed
    with _default_lock:
        _portals.add(started)
        exit_hook = not _exit_hook_installed
        fork_hook = not _fork_hook_installed and hasattr(os, "register_at_fork")
        _exit_hook_installed = _fork_hook_installed = True
    if exit_hook:
        atexit.register(_close_at_exit)
    if fork_hook:
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit() -> None:
    """Close every portal of this process, releasing gracefully; never raise at exit."""
    global _exiting
    with _default_lock:
        _exiting = True
        portals = list(_portals)
    for each in portals:
        try:
            each.close()
        except BaseException:  # pragma: no cover - a release that raised SystemExit at exit
            logger.exception("resourceloop could not close %r at exit", each)


def _after_fork_in_child() -> None:
    """The child never touches the parent's portals; cheap, as fork hooks must be."""
    global _default, _default_lock, _portals, _exit_hook_installed
    inherited = list(_portals)
    _forgotten.append(inherited)  # keep their loops alive: never collected, never closed here
    for each in inherited:
        each._lock = threading.Lock()  # another thread may have held it at fork time
        if each._state != "new":
            each._state = "forked"
    _portals = weakref.WeakSet()
    _default = None
    _default_lock = threading.Lock()
    # The child's first portal registers the exit handler again, after whatever the child
    # registered meanwhile, so that it runs first, as in the parent.
    atexit.unregister(_close_at_exit)
    _exit_hook_installed = False


# -- async_to_sync --------------------------------------------------------------------------------

_MISSING: Final[Any] = object()  # async_to_sync(portal=...) without a function: a decorator


@overload
def async_to_sync(
    func: Callable[P, Awaitable[R]], *, portal: bool | Portal = False
) -> Callable[P, R]: ...
@overload
def async_to_sync(
    *, portal: bool | Portal
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, R]]: ...
def async_to_sync(
    func: Any = _MISSING, *, portal: bool | Portal = False
) -> Callable[P, R] | Callable[[Callable[P, Awaitable[R]]], Callable[P, R]]:
    """Turn a coroutine function into a blocking function; usable as ``@async_to_sync``.

    By default (``portal=False``) each call runs ``func(*args, **kwargs)`` to completion on a
    new event loop and closes that loop before returning (``asyncio.run``), so the resources
    the call acquired are released gracefully on its loop just before it closes. From a thread
    that already runs an event loop, the call runs on a new loop in a worker thread instead,
    and the calling thread (with its loop) waits for it.

    With ``portal=True`` each call runs on the process-wide default portal (:func:`portal`):
    one long-lived loop in a daemon thread, so resources (and their connections) are reused
    by the next call and released when the portal closes or the interpreter exits. With a
    :class:`Portal`, calls run on that portal. See :class:`Portal` for the semantics; a call
    from a thread whose loop is running then raises :class:`PortalCallError`.

    ``contextvars`` are copied into the call either way.

    Args:
        func: A coroutine function (``async def``), or an object whose ``__call__`` is one.
            Omit it to get a decorator: ``@async_to_sync(portal=True)``.
        portal: ``False`` (a fresh loop per call), ``True`` (the default portal) or a
            :class:`Portal`.

    Returns:
        A function with the same parameters (``functools.wraps``) that returns the result of
        the coroutine or raises its exception; without ``func``, a decorator making one.

    Raises:
        TypeError: ``func`` is not a coroutine function, or ``portal`` is neither a bool nor
            a :class:`Portal`.

    The returned function may be called from any thread (with a portal: any thread that does
    not run an event loop).

    .. versionadded:: 0.1.0
    """
    if not isinstance(portal, (bool, Portal)):
        raise TypeError(
            f"async_to_sync(portal=...) takes True, False or a resourceloop.sync.Portal, "
            f"got {portal!r}"
        )
    if func is _MISSING:
        return functools.partial(async_to_sync, portal=portal)
    _check_async_callable(func, "async_to_sync")
    target: Callable[P, Awaitable[R]] = func
    if isinstance(portal, Portal):
        return portal.wrap(target)
    if portal:

        @functools.wraps(target)
        def on_default_portal(*args: P.args, **kwargs: P.kwargs) -> R:
            return _default_portal()._call(target, args, kwargs)

        return on_default_portal

    @functools.wraps(target)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        if get_running_loop_or_none() is None:
            return _run(target, args, kwargs)
        return _run_in_thread(target, args, kwargs)

    return blocking


_default_portal = portal  # async_to_sync's parameter shadows the name


def _run(func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    """Run the call on a new loop in this thread, then close the loop."""

    async def call() -> R:
        return await func(*args, **kwargs)

    return asyncio.run(call())


def _run_in_thread(
    func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    """Run the call on a new loop in a worker thread and wait for it (blocks this thread).

    An exception raised in this thread while it waits (Ctrl-C) cancels the call on its loop,
    waits for the worker to finish, and propagates: no call runs on with nobody waiting.
    The wait is on an event of our own, in slices so that such an exception gets in:
    ``Thread.join()`` interrupted by one marks the thread stopped while it still runs.
    """
    context = contextvars.copy_context()
    outcome: list[Any] = []
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
    began, done = threading.Event(), threading.Event()
    gave_up = False

    async def call() -> R:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        if gave_up:  # the caller gave up before the call began: it never does
            raise asyncio.CancelledError
        return await func(*args, **kwargs)

    def target() -> None:
        began.set()
        try:
            outcome.append((True, context.run(asyncio.run, call())))
        except BaseException as error:
            outcome.append((False, error))
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"resourceloop-async_to_sync-{func!r:.40}")
    started = False
    try:
        worker.start()
        started = True
        while not done.wait(_WAIT_SLICE):
            pass
    except BaseException:
        gave_up = True
        for loop, task in running:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the call ended and its loop closed meanwhile
                pass
        if started or began.is_set():  # else it never began, or will end at once
            done.wait()
            worker.join()  # it has finished: only its last steps are left
        outcome.clear()
        raise
    worker.join()  # it has finished: only its last steps are left
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    outcome.clear()  # break the exception -> traceback -> frame -> outcome cycle
    raise value


def sync_to_async(func: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn a blocking function into a coroutine function; usable as ``@sync_to_async``.

    Each call runs ``func(*args, **kwargs)`` in the running loop's default executor (a thread
    pool), with a copy of the caller's ``contextvars``, and the returned coroutine waits for
    it without blocking the loop. Cancelling the coroutine does not stop the function, which
    runs to completion in its thread; its result is then dropped.

    Args:
        func: A synchronous callable.

    Returns:
        A coroutine function with the same parameters (``functools.wraps``).

    Raises:
        TypeError: ``func`` is not callable, or is a coroutine function (await it instead).

    The returned coroutine function must be awaited on a running event loop, in any thread.

    .. versionadded:: 0.1.0
    """
    if not callable(func):
        raise TypeError(f"sync_to_async needs a callable, got {func!r}")
    if _is_async_callable(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"sync_to_async needs a synchronous function, got the coroutine function {func!r}; "
            "await it directly instead"
        )

    @functools.wraps(func)
    async def in_thread(*args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        return await loop.run_in_executor(None, call)

    return in_thread


# Tracebacks, pickles and the reference show them where users import them from.
PortalCallError.__module__ = PortalClosedError.__module__ = __name__
