"""The portal's own thread: its event loop's life, and the calls that run on it.

A :class:`~resourceloop.sync.Portal` is used from two sides. Callers, in any thread, start it,
submit calls and wait, and close it (``_portal``). Everything else happens on the portal's
thread, and is here: making the loop, entering the portal's ``ResourceManager`` on it,
turning each submitted call into a task and settling its caller's future, and, once asked to
stop, cancelling the calls still running, leaving the manager (which releases every resource
gracefully on this loop) and shutting the loop down like ``asyncio.Runner``.

The seam is the thread boundary: the only ways in from a caller's thread are the thread's
start, ``loop.call_soon_threadsafe(_start_call | _request_stop)``, the portal's fields guarded
by ``_lock``, the ``_pending`` set and a caller's cancelled future (whose callback cancels its
task through ``call_soon_threadsafe``); the only ways out are the callers'
``concurrent.futures.Future`` objects (settled with ``_settle``) and the startup's two events.

Guarantees
    * A call's outcome is returned, never raised, into its future: KeyboardInterrupt or
      SystemExit raised by a call reaches that call's caller and does not stop the loop.
    * No caller is left waiting: every future submitted is settled once, or was cancelled by
      its caller; a call that ignores cancellation at close, or that arrives while the loop
      shuts down, gets :class:`~resourceloop.sync.PortalClosedError` when the thread finishes.
    * A failed start (the loop factory or a non-lazy template's ``acquire_func`` raised) puts
      the portal back to ``"new"``, so the next call tries again with a new thread and loop.
    * Stopping is bounded: calls that ignore cancellation, leftover tasks, async generators
      and jobs still running in the portal's default executor are each waited for up to
      ``release_timeout``, then left behind, so ``close()`` returns even when sync code the
      portal runs in its executor is stuck (the job keeps its thread; the loop closes anyway).
    * The portal's default executor is its own ``ThreadPoolExecutor``, whose threads know
      their portal (:func:`in_executor_of`), so that ``close()`` called from sync code the
      portal runs there (``asyncio.to_thread``, ``sync_to_async``) asks the portal to stop and
      returns instead of waiting for the thread that runs it, which would wait for it back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

from . import _config
from ._compat import block_signals_in_this_thread
from ._errors import PortalClosedError
from ._locks import new_lock
from ._manager import owned_loops as _owned_loops
from .resources import ResourceManager

__all__ = [
    "CLOSED",
    "CLOSING",
    "FORKED",
    "NEW",
    "RUNNING",
    "STARTING",
    "Phase",
    "PortalLoop",
    "Startup",
]

logger = logging.getLogger("resourceloop")


class Phase(enum.Enum):
    """Where a portal is in its life. Written under the portal's ``_lock`` only.

    NEW -> STARTING (a caller starts its thread) -> RUNNING (its manager entered) -> CLOSING
    (``close()``, or its loop stopped by something else) -> CLOSED (its thread finished). A
    failed start goes back to NEW, so that the next call tries again; ``close()`` on a NEW
    portal goes straight to CLOSED. In a fork child, any started portal is FORKED: its thread
    exists only in the parent.
    """

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"
    FORKED = "forked"


# Module constants, as ``_state`` does: an enum member read through its class costs a few
# hundred nanoseconds on 3.11, on every portal call.
NEW: Final = Phase.NEW
STARTING: Final = Phase.STARTING
RUNNING: Final = Phase.RUNNING
CLOSING: Final = Phase.CLOSING
CLOSED: Final = Phase.CLOSED
FORKED: Final = Phase.FORKED


#: In a portal's executor threads, ``owner`` is a weak reference to that portal (set by the
#: executor's initializer); absent in every other thread.
_executor_thread = threading.local()


def _mark_executor_thread(owner: weakref.ref[PortalLoop]) -> None:
    _executor_thread.owner = owner


def in_executor_of(portal: PortalLoop) -> bool:
    """Whether the calling thread is one of ``portal``'s default executor threads."""
    owner = getattr(_executor_thread, "owner", None)
    return owner is not None and owner() is portal


class Startup:
    """One attempt to start a portal's thread: the waiters' event and the failure, if any."""

    __slots__ = ("done", "error", "event")

    def __init__(self) -> None:
        self.event = threading.Event()  # set once the loop runs, or the start failed
        self.error: BaseException | None = None
        self.done = threading.Event()  # set once the thread has closed its loop


class PortalLoop:
    """A portal's state, and what runs on its thread; ``Portal`` adds the callers' side.

    Args:
        name: The name of the portal's thread.
        loop_factory: Makes the portal's event loop.
    """

    __slots__ = (
        "__weakref__",
        "_calls",
        "_close_error",
        "_executor",
        "_lock",
        "_loop",
        "_loop_factory",
        "_name",
        "_pending",
        "_phase",
        "_startup",
        "_stop",
        "_stopping",
        "_thread",
    )

    def __init__(self, name: str, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._name = name
        self._loop_factory = loop_factory
        # Guarded by _lock: writes of _phase, _loop, _thread, _startup (calls read them without
        # it). Held for a few assignments and one call_soon_threadsafe at a time, never while
        # waiting or calling user code.
        self._lock = new_lock()
        self._phase = NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._startup: Startup | None = None
        # Owned by the portal's loop (touched only on its thread):
        self._stopping = False
        self._stop: asyncio.Event | None = None
        self._calls: dict[asyncio.Task[Any], concurrent.futures.Future[Any]] = {}
        # Futures of calls submitted but not started; added by callers, removed on the loop
        # (set.add and set.discard are atomic), failed by the portal's thread as it finishes.
        self._pending: set[concurrent.futures.Future[Any]] = set()
        # Written by the portal's thread before it sets its startup's done; read after.
        self._close_error: BaseException | None = None
        # The loop's default executor, made and shut down by the portal's thread.
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        calls = len(self._calls)
        return f"<Portal {self._name!r} {self._phase.value} calls={calls}>"

    @property
    def usable(self) -> bool:
        """Not closing, closed or inherited from the parent of a fork."""
        return self._phase in (NEW, STARTING, RUNNING)

    def forget_after_fork(self) -> bool:
        """In a fork child: a fresh lock, and "forked" unless never started; True if usable.

        A started portal's thread does not exist here ("starting" included: its thread was
        about to run); one never started stays usable in the child.
        """
        self._lock = new_lock()
        if self._phase is not NEW:
            self._phase = FORKED
            return False
        return True

    def _closed_message(self) -> str:
        if self._phase is FORKED:
            return (
                f"{self!r} belongs to the parent process: its thread does not exist after "
                "os.fork(); create a new Portal in the child, or use resourceloop.sync.portal()"
            )
        return (
            f"{self!r} is closed; create a new Portal, or use resourceloop.sync.portal() (and "
            "async_to_sync(portal=True)), which replaces a closed default portal"
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

    def _thread_main(self, startup: Startup) -> None:
        block_signals_in_this_thread()  # Ctrl-C is for the callers' threads
        loop: asyncio.AbstractEventLoop | None = None
        try:
            loop = self._loop_factory()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                thread_name_prefix=f"{self._name}-executor",
                initializer=_mark_executor_thread,
                initargs=(weakref.ref(self),),
            )
            loop.set_default_executor(self._executor)
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

    async def _serve(self, loop: asyncio.AbstractEventLoop, startup: Startup) -> None:
        self._stop = asyncio.Event()
        owner = ResourceManager()
        try:
            await owner.__aenter__()
        except BaseException as exc:
            startup.error = exc  # the next call tries again, with a new thread and loop
            with self._lock:
                # unless close() was called meanwhile (from the executor, see _portal)
                self._phase = CLOSED if self._phase is CLOSING else NEW
                self._startup = None
            startup.event.set()
            return
        _owned_loops.add(loop)
        with self._lock:
            self._loop = loop
            if self._phase is STARTING:
                self._phase = RUNNING
            elif self._phase is CLOSING:  # close() from the executor while starting
                self._request_stop()
        startup.event.set()
        try:
            await self._stop.wait()
        finally:
            self._stopping = True
            with self._lock:
                if self._phase is RUNNING:  # stopped by something else than close()
                    self._phase = CLOSING
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
            self._run_until_done(loop, loop.create_task(self._shut_down_asyncgens(loop)))
            self._run_until_done(loop, loop.create_task(self._shut_down_executor(loop)))
        finally:
            try:
                loop.close()
            except BaseException as exc:
                self._record(exc)

    async def _shut_down_asyncgens(self, loop: asyncio.AbstractEventLoop) -> None:
        # Bounded: an async generator whose finally block hangs must not hang close().
        task = loop.create_task(loop.shutdown_asyncgens())
        await asyncio.wait({task}, timeout=_config.current().release_timeout)
        if not task.done():
            logger.warning("%r: async generators still closing after release_timeout", self)
            task._log_destroy_pending = False  # type: ignore[attr-defined]

    async def _shut_down_executor(self, loop: asyncio.AbstractEventLoop) -> None:
        """Shut the default executor down as ``loop.shutdown_default_executor()``, bounded.

        As CPython does, the join happens in a helper thread so the loop never blocks; unlike
        it (before 3.12: without limit; since: 300 s), it is waited for up to
        ``release_timeout``. A job still running then keeps its thread, and the loop closes.
        """
        executor, self._executor = self._executor, None
        if executor is None:
            return
        done = loop.create_future()

        def join() -> None:
            try:
                executor.shutdown(wait=True)
            finally:
                try:
                    loop.call_soon_threadsafe(_set_done, done)
                except RuntimeError:  # the loop closed without waiting for us
                    pass

        threading.Thread(target=join, name=f"{self._name}-executor-shutdown", daemon=True).start()
        await asyncio.wait({done}, timeout=_config.current().release_timeout)
        if not done.done():
            logger.warning(
                "%r: a job of its default executor still runs after release_timeout; the "
                "portal closes without waiting for it (the job keeps its thread)",
                self,
            )

    def _finish_thread(self, startup: Startup) -> None:
        failed_to_start = not startup.event.is_set()  # the loop factory failed
        with self._lock:
            # After a failed start, a newer start may already run its own thread: then the
            # state, the calls and the pending futures are that thread's, not ours.
            mine = self._thread is threading.current_thread()
            if mine:
                self._loop = None
                if failed_to_start or startup.error is not None:
                    closing = self._phase in (CLOSING, CLOSED)
                    self._phase = CLOSED if closing else NEW
                    self._startup = None
                elif self._phase in (RUNNING, CLOSING, STARTING):
                    self._phase = CLOSED
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


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


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
