"""Calls onto a loop that runs in another thread, and results handed back across threads.

Everything that crosses threads goes through ``call_soon_threadsafe``, after checking that the
loop is open, and still expects ``RuntimeError``: the loop can close in between.

A call onto another loop is a ``RemoteCall``, not ``run_coroutine_threadsafe``: its coroutine is
made over there, when the call starts, so a loop that closes with the call still queued leaves
no coroutine that was never awaited; and it is settled exactly once, by whichever comes first
(its task, the loop's close hook, the caller that saw the loop closed), with no
``concurrent.futures.Future`` that asyncio's chaining would try to settle a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from ._errors import LoopClosedError
from ._registry import registry

__all__ = ["RemoteCall", "on_loop", "retrieve", "settle_threadsafe"]

#: How often a cross-thread acquisition checks that its target loop has not closed meanwhile
#: (only matters for a loop closed without running our close hook; the hook fails waiters at once).
_REMOTE_LIVENESS_CHECK = 0.1


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a failure as seen, so asyncio does not log it when every waiter went away."""
    if not task.cancelled():
        task.exception()


def settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    exc: BaseException | None,
    result: Any = None,
) -> None:
    """Complete ``future`` (of ``loop``) from another thread, once; nothing if the loop closed.

    With ``exc``, or else with ``result``; the first settlement to run on the loop wins.
    """

    def settle() -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while we worked: nobody is waiting any more
        pass


@attrs.define(eq=False)
class RemoteCall:
    """One call handed to an event loop running in another thread, and its answer.

    ``answer`` belongs to the caller's loop and is settled only through that loop's
    ``call_soon_threadsafe``. ``start`` runs on the target loop; ``fail`` runs there too (from
    its close hook); ``abandon`` runs in the caller's thread. Once failed or abandoned, a call
    that has not started never does.
    """

    what: str
    work: Callable[[], Coroutine[Any, Any, Any]]
    caller: asyncio.AbstractEventLoop
    answer: asyncio.Future[Any]
    given_up: bool = False
    task: asyncio.Future[Any] | None = None

    def start(self) -> None:
        if self.given_up:
            return
        self.task = asyncio.ensure_future(self.work())
        self.task.add_done_callback(self._finished)

    def fail(self, error: BaseException) -> None:
        """The target loop closes before the call could finish: tell the caller now."""
        self.given_up = True
        self._settle(error, None)

    def abandon(self) -> None:
        """The caller stops waiting; a call already started runs on (it is that loop's)."""
        self.given_up = True

    def _finished(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            # Cancelled over there, not by the caller (whose own cancellation never reaches
            # this task): that loop is shutting down, as asyncio.run() does on exit. A
            # CancelledError would look like the caller's own cancellation.
            self._settle(
                LoopClosedError(
                    f"{self.what}: the event loop cancelled the call before it finished: it "
                    "is shutting down"
                ),
                None,
            )
        else:
            error = task.exception()
            self._settle(error, None if error is not None else task.result())

    def _settle(self, error: BaseException | None, result: Any) -> None:
        settle_threadsafe(self.caller, self.answer, error, result)


async def on_loop(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Coroutine[Any, Any, Any]], what: str
) -> Any:
    """Run ``work()`` on ``loop``, which runs in another thread, and await its result here.

    ``what`` starts every error message (it names the template). Cancelling the caller does
    not cancel a call that started over there: it finishes on its own loop, as a shielded
    creation does.
    """
    if not loop.is_running():
        raise RuntimeError(
            f"{what}: the given event loop is neither the running loop nor running in another "
            "thread, so nothing can run on it; call this from a coroutine running on that loop "
            "instead"
        )
    here = asyncio.get_running_loop()
    call = RemoteCall(what, work, here, here.create_future())
    state = registry.get(loop)
    if state is not None:
        registry.add_remote(state, call)  # the close hook fails it if the loop closes first
    try:
        try:
            loop.call_soon_threadsafe(call.start)
        except RuntimeError:  # it closed in between
            raise LoopClosedError(
                f"{what}: the event loop closed before it could run the call"
            ) from None
        while True:
            done, _ = await asyncio.wait({call.answer}, timeout=_REMOTE_LIVENESS_CHECK)
            if done:
                return call.answer.result()
            if loop.is_closed():  # closed without our hook: the call will never run
                raise LoopClosedError(f"{what}: the event loop closed before it could run the call")
    finally:
        call.abandon()
        if state is not None:
            registry.discard_remote(state, call)
