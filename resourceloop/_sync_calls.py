"""``async_to_sync`` and ``sync_to_async``: the two wrappers, and the per-call loop path.

``async_to_sync`` either hands each call to a portal (``_portal``) or, by default, runs it on
a fresh event loop that is closed when the call returns, so that the close hook releases
what the call acquired. From a thread whose loop is running that fresh loop needs a thread of
its own: ``_run_in_thread`` starts one per call and waits for it, and makes sure that Ctrl-C
in the caller cancels the call and waits for it to end rather than leaving it running with
nobody waiting. ``sync_to_async`` goes the other way, through the running loop's default
executor. ``resourceloop.sync`` re-exports both.

Inside asgiref's ``sync_to_async`` (a Django ASGI view, or any sync code an ASGI server runs
through asgiref), there is a better loop than a fresh one: the server's own, which asgiref
records in the thread (``SyncToAsync.threadlocal.main_event_loop``) and which its own
``async_to_sync`` runs the coroutine on. ``_outer_loop`` finds it and the call is handed to
asgiref's ``AsyncToSync`` (which also lets a thread-sensitive ``sync_to_async`` inside the
coroutine run in the waiting thread rather than deadlock), so that the server's clients and
connections are reused across requests. That loop is then marked owned (``owned_loops``): a
``resource_manager()`` entered by such a call acquires but releases nothing on exit, as on a
portal, and the resources are released gracefully when the server's loop closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar, overload

from ._compat import get_running_loop_or_none
from ._manager import owned_loops
from ._portal import WAIT_SLICE, Portal, check_async_callable, is_async_callable
from ._portal import portal as _default_portal  # async_to_sync's parameter shadows the name

__all__ = ["async_to_sync", "sync_to_async"]

P = ParamSpec("P")
R = TypeVar("R")

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

    Inside asgiref's ``sync_to_async`` (a sync Django view under an ASGI server such as
    uvicorn), a call runs instead on the server's own running loop, as asgiref's
    ``async_to_sync`` does: clients acquired there are reused by the next requests, a
    ``resource_manager()`` entered by the call acquires but releases nothing (as on a portal),
    and everything is released gracefully when the server's loop closes.

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
    check_async_callable(func, "async_to_sync")
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
            outer = _outer_loop()
            if outer is not None:
                return _run_on_outer_loop(outer, target, args, kwargs)
            return _run(target, args, kwargs)
        return _run_in_thread(target, args, kwargs)

    return blocking


def _outer_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop of the ASGI server whose asgiref ``sync_to_async`` runs this thread.

    asgiref's own lookup (``AsyncToSync.__call__``): its ``SyncToAsync.threadlocal`` names the
    loop and the process it was set in (a fork child must not use its parent's loop). Only a
    loop that still runs is used; without asgiref loaded, this costs one dict lookup.
    """
    asgiref_sync = sys.modules.get("asgiref.sync")
    if asgiref_sync is None:
        return None
    local = getattr(getattr(asgiref_sync, "SyncToAsync", None), "threadlocal", None)
    if local is None or getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(local, "main_event_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop) or loop.is_closed():
        return None
    return loop if loop.is_running() else None


def _run_on_outer_loop(
    loop: asyncio.AbstractEventLoop,
    func: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """Run the call on the server's loop through asgiref's ``AsyncToSync``, and wait."""
    owned_loops.add(loop)  # managers of these calls keep what they acquire (see above)

    async def call() -> R:
        return await func(*args, **kwargs)

    asgiref_sync = sys.modules["asgiref.sync"]
    return asgiref_sync.AsyncToSync(call)()  # type: ignore[no-any-return]


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
        while not done.wait(WAIT_SLICE):
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
    if is_async_callable(func) or inspect.isasyncgenfunction(func):
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
