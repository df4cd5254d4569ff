"""``async_to_sync`` and ``sync_to_async``: call async code from sync code and back.

The seed example's helpers, compatible with Pyot's ``pyot.utils.sync``. Each ``async_to_sync``
call runs on a new event loop that is closed when the call returns (as ``asyncio.run`` does), so
every resource the call acquired is released gracefully, on that loop, just before it closes:
resourceloop's close hook does it, with or without a ``resource_manager``.

Where this differs from Pyot's:
    * ``async_to_sync`` works from a thread that already runs an event loop: the call then runs
      on a fresh loop in a short-lived worker thread (Pyot's ``asyncio.run`` raises). The
      calling loop is blocked until it returns, as with any blocking call; from async code,
      ``await`` the coroutine function directly instead.
    * ``sync_to_async`` refuses coroutine functions and non-callables with ``TypeError``, looks
      the loop up when called (not ``get_event_loop()``) and runs the function in the loop's
      default executor with the caller's ``contextvars``.
    * Both are typed with ``ParamSpec``: the wrapper keeps the wrapped function's parameters.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from ._compat import get_running_loop_or_none, iscoroutinefunction

__all__ = ["async_to_sync", "sync_to_async"]

P = ParamSpec("P")
R = TypeVar("R")


def _is_async_callable(func: object) -> bool:
    return iscoroutinefunction(func) or iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def async_to_sync(func: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Turn a coroutine function into a blocking function; usable as ``@async_to_sync``.

    Each call runs ``func(*args, **kwargs)`` to completion on a new event loop and closes that
    loop before returning (``asyncio.Runner`` on Python 3.11+, ``asyncio.run`` before), so the
    resources the call acquired are released gracefully on its loop just before it closes. From
    a thread that already runs an event loop, the call runs on a new loop in a worker thread
    instead, and the calling thread (with its loop) waits for it. ``contextvars`` are copied
    into the call.

    Args:
        func: A coroutine function (``async def``), or an object whose ``__call__`` is one.

    Returns:
        A function with the same parameters (``functools.wraps``) that returns the result of
        the coroutine or raises its exception.

    Raises:
        TypeError: ``func`` is not a coroutine function.

    The returned function may be called from any thread, including one running a loop.

    .. versionadded:: 0.1.0
    """
    if not callable(func) or not _is_async_callable(func):
        raise TypeError(
            f"async_to_sync needs a coroutine function (async def), got {func!r}; "
            "a synchronous function can simply be called"
        )

    @functools.wraps(func)
    def blocking(*args: P.args, **kwargs: P.kwargs) -> R:
        if get_running_loop_or_none() is None:
            return _run(func, args, kwargs)
        return _run_in_thread(func, args, kwargs)

    return blocking


def _run(func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    """Run the call on a new loop in this thread, then close the loop."""

    async def call() -> R:
        return await func(*args, **kwargs)

    return asyncio.run(call())


def _run_in_thread(
    func: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    """Run the call on a new loop in a worker thread and wait for it (blocks this thread)."""
    context = contextvars.copy_context()
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, context.run(_run, func, args, kwargs)))
        except BaseException as error:
            outcome.append((False, error))

    worker = threading.Thread(target=target, name=f"resourceloop-async_to_sync-{func!r:.40}")
    worker.start()
    worker.join()
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
