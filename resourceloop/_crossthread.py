"""Calls onto a loop that runs in another thread, and results handed back across threads.

Everything that crosses threads goes through ``run_coroutine_threadsafe`` or
``call_soon_threadsafe``, after checking that the loop is open, and still expects
``RuntimeError``: the loop can close in between.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

from ._errors import LoopClosedError
from ._registry import registry

__all__ = ["on_loop", "retrieve", "settle_threadsafe"]

#: How often a cross-thread acquisition checks that its target loop has not closed meanwhile
#: (only matters for a loop closed without running our close hook; the hook fails waiters at once).
_REMOTE_LIVENESS_CHECK = 0.1


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a failure as seen, so asyncio does not log it when every waiter went away."""
    if not task.cancelled():
        task.exception()


def settle_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], exc: BaseException | None
) -> None:
    """Complete ``future`` (of ``loop``) from another thread; nothing if the loop closed."""

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


async def on_loop(
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
                waiter.add_done_callback(retrieve)  # nobody awaits it any more
                try:
                    remote.set_exception(LoopClosedError("the event loop closed"))
                except concurrent.futures.InvalidStateError:  # it finished in between
                    pass
                raise LoopClosedError(f"{what}: the event loop closed before it could run the call")
    finally:
        if state is not None:
            state.remote.discard(remote)
