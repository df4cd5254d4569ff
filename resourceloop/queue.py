"""``Queue``: run awaitables on a fixed set of worker tasks and collect their results in order.

The seed example's helper, compatible with Pyot's ``pyot.core.queue.Queue``::

    async with Queue(workers=25) as queue:
        for match in history.matches[:5]:
            await queue.put(match.get())
        matches = await queue.join()

Where this differs from Pyot's:
    * A non-awaitable ``put()`` is a ``TypeError`` (Pyot: ``ValueError``).
    * ``join()`` returns results in put order, always (Pyot's docstring says "might not"), and
      leaves out returned exception instances as well as raised ones (Pyot keeps the former).
    * An exception handler that raises is logged; it never kills a worker.
    * An item that is cancelled on its own (a ``Task`` someone else cancelled) is reported to
      the exception handler like any failure; it does not kill the worker that awaited it.
    * Leaving the context never leaves a task or an un-awaited coroutine behind: when the body
      raises or is cancelled, items not started yet are closed (coroutines) or cancelled
      (futures), and items in progress are cancelled and awaited. Pyot's ``__aexit__`` waits
      for the whole queue even then, and an item left in a full queue is never awaited.
    * ``put()`` and ``join()`` outside the context are a ``RuntimeError``.
    * The default exception handler logs with the traceback on the ``resourceloop`` logger
      (Pyot prints it to stderr). Pyot's ``log_level`` argument is gone: set the level of the
      ``resourceloop`` logger instead.
    * ``join()`` fails with ``RuntimeError`` instead of waiting forever when the workers were
      cancelled from outside (by a loop shutting down, say).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, final, overload

__all__ = ["ExceptionHandler", "Queue"]

logger = logging.getLogger("resourceloop")

T = TypeVar("T")

ExceptionHandler = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
"""``exception_handler(type, value, traceback)``, as ``sys.exc_info()`` gives them."""


def _log_exception(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logger.error("a Queue item raised %s", exc_type.__name__, exc_info=(exc_type, exc, tb))


def _discard(item: Awaitable[Any]) -> asyncio.Future[Any] | None:
    """Dispose of an awaitable that will never be awaited, without a "never awaited" warning.

    Returns the future it cancelled, if any, for the caller to wait for.
    """
    if inspect.iscoroutine(item):
        item.close()
    elif asyncio.isfuture(item):
        get_loop = getattr(item, "get_loop", None)
        if get_loop is None or get_loop() is not asyncio.get_running_loop():
            return None  # another loop's future: not ours to cancel, nor to wait for here
        item.cancel()
        return item
    else:
        close = getattr(item, "close", None)  # e.g. a wrapper around a coroutine
        if callable(close) and not inspect.iscoroutinefunction(close):
            try:
                close()
            except Exception:  # pragma: no cover - a foreign close() failed: nothing to do
                logger.debug("could not close un-started Queue item %r", item, exc_info=True)
    return None


@final
class Queue:
    """Run awaitables on ``workers`` worker tasks; ``join()`` returns their results in order.

    Use only as ``async with Queue() as queue:``. Inside, ``await queue.put(awaitable)`` hands
    an awaitable to the workers (waiting while the queue is full) and ``await queue.join()``
    waits until every item put so far is done and returns their results in put order. Results
    that are ``None`` or exceptions are not collected; an item that raises is passed to
    ``exception_handler``.

    Leaving the context after a body that succeeded waits for the queue to empty, then
    cancels the workers. If the body raised or was cancelled, the items not started yet are
    discarded (coroutines closed, futures cancelled) and the items in progress cancelled. Either
    way, when the ``async with`` block ends, no worker or item task is left behind.

    Args:
        workers: How many items run at the same time.
        maxsize: How many items may wait in the queue before ``put()`` waits; ``None`` means
            ``workers * 2`` (as in Pyot), ``0`` means no bound.
        exception_handler: Called as ``exception_handler(type, value, traceback)`` for every
            item that raises (an ``Exception``, or a ``CancelledError`` of the item itself).
            ``None`` logs the error with its traceback on the ``resourceloop`` logger.

    Raises:
        ValueError: ``workers`` is less than 1, or ``maxsize`` is negative.
        TypeError: ``workers`` or ``maxsize`` is not an integer, or ``exception_handler`` is
            neither callable nor ``None``.

    A queue belongs to the loop it is entered on: call its methods from tasks of that loop
    only. It may be entered again after it exits, but not while it is active.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_active",
        "_cancelled_items",
        "_closing",
        "_exception_handler",
        "_maxsize",
        "_next_id",
        "_queue",
        "_results",
        "_worker_tasks",
        "_workers",
    )

    def __init__(
        self,
        workers: int = 25,
        maxsize: int | None = None,
        exception_handler: ExceptionHandler | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"workers must be an integer, got {workers!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if maxsize is None:
            maxsize = workers * 2
        elif isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an integer or None, got {maxsize!r}")
        elif maxsize < 0:
            raise ValueError(f"maxsize must be 0 (unbounded) or more, got {maxsize}")
        if exception_handler is not None and not callable(exception_handler):
            raise TypeError(
                f"exception_handler must be callable or None, got {exception_handler!r}"
            )
        self._workers = workers
        self._maxsize = maxsize
        self._exception_handler: ExceptionHandler = exception_handler or _log_exception
        self._queue: asyncio.Queue[tuple[int, Awaitable[Any]]] | None = None
        self._results: dict[int, Any] = {}
        self._worker_tasks: list[asyncio.Future[Any]] = []
        self._cancelled_items: list[asyncio.Future[Any]] = []
        self._next_id = 0
        self._active = False
        self._closing = False

    @property
    def workers(self) -> int:
        """How many items run at the same time."""
        return self._workers

    @property
    def maxsize(self) -> int:
        """How many items may wait before ``put()`` waits (``0``: unbounded)."""
        return self._maxsize

    @property
    def exception_handler(self) -> ExceptionHandler:
        """The function called with ``(type, value, traceback)`` for each failing item."""
        return self._exception_handler

    def __repr__(self) -> str:
        waiting = 0 if self._queue is None else self._queue.qsize()
        return (
            f"<Queue active={self._active} workers={self._workers} maxsize={self._maxsize} "
            f"waiting={waiting} results={len(self._results)}>"
        )

    # -- context ------------------------------------------------------------------------------

    async def __aenter__(self) -> Queue:
        if self._active:
            raise RuntimeError("this Queue is already active; create another one")
        self._queue = asyncio.Queue(maxsize=self._maxsize)
        self._results = {}
        self._next_id = 0
        self._closing = False
        self._worker_tasks = [asyncio.ensure_future(self._work()) for _ in range(self._workers)]
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        try:
            if exc is None:
                await self._wait_for_queue()
        finally:
            # Also reached when the wait above is cancelled: abort what is left.
            self._closing = True
            self._active = False
            self._discard_waiting()
            await self._stop_workers()
            self._results = {}

    async def _wait_for_queue(self) -> bool:
        """Wait until the queue is empty and idle; False if a worker ended first."""
        queue = self._require_queue()
        joining = asyncio.ensure_future(queue.join())
        try:
            # A worker only ends if it was cancelled from outside (say, by the loop shutting
            # down); then the queue would never empty, so stop waiting.
            await asyncio.wait([joining, *self._worker_tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not joining.done():
                joining.cancel()
                await asyncio.wait([joining])
        return not joining.cancelled()

    def _discard_waiting(self) -> None:
        """Discard the items not started yet; cancelled futures go to ``_cancelled_items``."""
        queue = self._queue
        if queue is None:
            return
        while True:
            try:
                _, item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            queue.task_done()
            future = _discard(item)
            if future is not None:
                self._cancelled_items.append(future)

    async def _stop_workers(self) -> None:
        tasks, self._worker_tasks = self._worker_tasks, []
        tasks += self._cancelled_items  # un-started futures we cancelled: wait for them too
        self._cancelled_items = []
        for task in tasks:
            task.cancel()
        # Wait for every worker even if we are cancelled meanwhile: none may outlive the block.
        pending = {task for task in tasks if not task.done()}
        cancelled: asyncio.CancelledError | None = None
        while pending:
            try:
                _, pending = await asyncio.wait(pending)
            except asyncio.CancelledError as error:
                cancelled = error
                for task in pending:
                    task.cancel()
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                # A worker never fails; a discarded item may have failed before it was cancelled.
                logger.debug("a discarded Queue item failed", exc_info=task.exception())
        if cancelled is not None:
            raise cancelled

    # -- workers ------------------------------------------------------------------------------

    async def _work(self) -> None:
        queue = self._require_queue()
        while True:
            item_id, item = await queue.get()
            try:
                await self._run_item(item_id, item)
            finally:
                queue.task_done()

    async def _run_item(self, item_id: int, item: Awaitable[Any]) -> None:
        # The item runs as its own task so that a CancelledError it raises on its own (a Task
        # cancelled by someone else) is told apart from this worker being cancelled.
        try:
            task = asyncio.ensure_future(item, loop=asyncio.get_running_loop())
        except Exception as error:  # a future of another loop: not ours to cancel
            if inspect.iscoroutine(item):  # pragma: no cover - ensure_future takes any coroutine
                item.close()
            self._handle(error)
            return
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            await _cancel_and_wait(task)
            raise
        if task.cancelled():
            try:
                task.result()
            except asyncio.CancelledError as error:
                self._handle(error)
            return
        failure = task.exception()
        if failure is not None:
            if not isinstance(failure, Exception):  # pragma: no cover - KeyboardInterrupt and kin
                raise failure
            self._handle(failure)
            return
        result = task.result()
        if result is not None and not isinstance(result, BaseException):
            self._results[item_id] = result

    def _handle(self, error: BaseException) -> None:
        try:
            self._exception_handler(type(error), error, error.__traceback__)
        except Exception:
            logger.exception("the Queue exception_handler %r raised", self._exception_handler)

    # -- public API ---------------------------------------------------------------------------

    def _require_queue(self) -> asyncio.Queue[tuple[int, Awaitable[Any]]]:
        if self._queue is None or not self._active:
            raise RuntimeError("this Queue is not active: use it inside `async with Queue() as q:`")
        return self._queue

    async def put(self, awaitable: Awaitable[Any], delay: float = 0) -> None:
        """Hand ``awaitable`` to the workers; wait while the queue is full.

        Args:
            awaitable: A coroutine, task, future or other awaitable; its result is collected
                by ``join()`` unless it is ``None`` or an exception.
            delay: Seconds to sleep before putting (Pyot's execution balancing); 0 by default.

        Raises:
            TypeError: ``awaitable`` is not awaitable.
            RuntimeError: The queue is not active (outside ``async with``, or leaving it).

        If this call fails or is cancelled before the item is in the queue, the item is
        discarded (a coroutine is closed, a future cancelled), so nothing is left un-awaited.

        Call it from a task of the loop the queue was entered on.

        .. versionadded:: 0.1.0
        """
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"Queue.put() takes an awaitable (a coroutine, task or future), got "
                f"{awaitable!r}; did you forget to call the coroutine function?"
            )
        try:
            queue = self._require_queue()
            if self._closing:
                raise RuntimeError("this Queue is closing and takes no more items")
            if delay > 0:
                await asyncio.sleep(delay)
            item_id = self._next_id
            self._next_id += 1
            await queue.put((item_id, awaitable))
        except BaseException:
            future = _discard(awaitable)
            if future is not None and self._active:
                self._cancelled_items.append(future)
            raise
        if self._closing_now():
            # The context was left while we waited for room: nobody will run it now.
            self._discard_waiting()
            raise RuntimeError("this Queue closed while put() waited for room")

    def _closing_now(self) -> bool:
        return self._closing  # a method, so type checkers do not narrow it across an await

    @overload
    async def join(self) -> list[Any]: ...
    @overload
    async def join(self, class_of_t: type[T]) -> list[T]: ...
    async def join(self, class_of_t: type[Any] | None = None) -> list[Any]:
        """Wait until every item put so far is done; return their results in put order.

        Results that are ``None`` or exceptions are left out, so the list may be shorter than
        the number of items. The collected results are handed over and forgotten: a later
        ``join()`` returns only what was put after this one.

        Args:
            class_of_t: Only for type checkers (``await queue.join(Match)`` is a
                ``list[Match]``); not checked at run time.

        Returns:
            The results, in the order their awaitables were put.

        Raises:
            RuntimeError: The queue is not active.

        Call it from a task of the loop the queue was entered on.

        .. versionadded:: 0.1.0
        """
        if not await self._wait_for_queue():
            raise RuntimeError(
                "a Queue worker was cancelled from outside the Queue, so the items left can "
                "never finish; leave the `async with Queue()` block to discard them"
            )
        results, self._results = self._results, {}
        return [results[key] for key in sorted(results)]


async def _cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it is done, even through further cancellations."""
    task.cancel()
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
    if not task.cancelled():
        task.exception()  # retrieved: the worker is cancelled, nobody else will look at it
