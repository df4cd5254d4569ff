"""Releasing resources in custody gracefully, on their own running loop.

Custody
    Whoever takes resources out of the registry (``Registry.take``/``take_all``/``begin_end``/
    ``adopt``) gets a ``Batch`` and must see every item settled: by ``release_batch`` (on the
    running loop), ``release_on_loop`` (running an idle loop here) or ``force_batch``. Each
    item is settled exactly once, under the registry lock (``Registry.settle``); an owner that
    loses that race simply does not count the item. Every function here ends with the batch
    fully settled, whatever happens inside: a failing release is counted and logged, a
    release that overruns ``release_timeout`` is cancelled and, if it is not over ``grace``
    later, stopped and forced; a ``BaseException`` (KeyboardInterrupt, SystemExit, a
    cancellation from outside) forces what is left *before* it propagates.

Graceful, and bounded
    ``release_func`` is called on the resource's own loop, in the calling task, and its
    awaitable is awaited there, exactly as ``await`` would (a coroutine, a
    ``@types.coroutine`` generator, any object whose ``__await__`` returns an iterator): the
    whole release runs in one task, so ``asyncio.timeout`` and anyio cancel scopes inside it
    work. Most releases end without ever suspending, and then cost no timer. One that
    suspends is bounded: at ``release_timeout`` the task is cancelled; ``grace`` later, if it
    is still not over, its coroutine is closed and the resource forced
    (``ReleaseTimeoutWarning``). A release that even then does not let go of its task (it
    awaits a ``gather`` of children that swallow ``CancelledError``, or a retry loop with a
    bare ``except:`` awaits again) would hold that task. At a loop's end the task is not let
    be held: in a task of ours (``_loop_run``, running an idle loop) it is told so
    (``stuck``), abandons that task and carries on; in ``asyncio.run``'s own last pass
    (``relay``) the task never waits on the release's future itself but on a proxy of ours,
    which the deadline resolves when it gives up, so the pass goes on at the bound without
    a task of its own to abandon (a loop's end otherwise costs an extra task and loop
    iterations, every loop). Either way a loop's end is bounded for real; a manager's exit
    runs in the user's task, which stays with it.

A ``release_func`` that returns a callable (``lambda s: s.close`` with the call's
parentheses missing) releases nothing: it is a failure, with an error naming the template.

Nothing here raises a release function's ``Exception``: failures are logged on the
``resourceloop`` logger, counted, and returned to the caller (the manager raises them).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final

from . import _config
from ._force import (
    callable_result_error,
    force_item,
    settle_failed,
    stop_release,
    warn_if_blocking,
)
from ._registry import registry
from ._state import HELD, RELEASING, Batch, Item
from .warnings import ReleaseTimeoutWarning

__all__ = ["PLAIN_TYPES", "grace", "isawaitable_fast", "release_batch", "release_bound"]


#: A release that ignores its cancellation is stopped this long after it was cancelled, as a
#: fraction of ``release_timeout`` and at most ``_MAX_GRACE`` seconds.
_GRACE_FRACTION: Final = 0.25
_MAX_GRACE: Final = 0.5


#: Types whose instances are neither awaitable nor callable (what release and acquire
#: functions usually return), so that ``isawaitable_fast`` answers them without
#: ``inspect.isawaitable``'s ABC check.
PLAIN_TYPES: set[type] = {type(None), bool, int, str}
_Coroutine: Final = types.CoroutineType


def isawaitable_fast(obj: object) -> bool:
    """``inspect.isawaitable``, remembering the types found plain."""
    cls = type(obj)
    if cls is types.CoroutineType:
        return True
    if cls in PLAIN_TYPES:
        return False
    if inspect.isawaitable(obj):
        return True
    # A generator's flags, not its type, decide; a callable is never plain (see
    # ``_start_release``); and a few dozen types are plenty to remember.
    if not isinstance(obj, types.GeneratorType) and not callable(obj) and len(PLAIN_TYPES) < 64:
        PLAIN_TYPES.add(cls)
    return False


def grace(timeout: float) -> float:
    """How long a cancelled release may take to end before it is stopped and forced."""
    return min(timeout * _GRACE_FRACTION, _MAX_GRACE)


def release_bound(n: int) -> float:
    """How long releasing ``n`` resources on a loop may take, at most, in one loop's end.

    Each release is bounded by ``release_timeout`` plus ``grace`` (``_finish_release``); one
    more such slot covers creations in flight, which a loop's end waits for too.
    """
    timeout = (_config._current or _config.current()).release_timeout
    return (n + 1) * (timeout + grace(timeout))


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    """``await awaitable``: the interpreter's own await protocol, for any awaitable."""
    return await awaitable


# -- graceful -----------------------------------------------------------------------------------


async def release_batch(
    batch: Batch, stuck: asyncio.Future[None] | None = None, *, relay: bool = False
) -> list[Exception]:
    """Release every unsettled item of ``batch`` on the running loop, newest first.

    Runs in the calling task. Failures are returned (and logged). If the task is cancelled
    from outside, or its coroutine closed (an owner abandoning it), the release in progress
    is forced (it was cut short) and the ones not begun stay in custody, for whoever goes on
    or ends the loop; any other ``BaseException`` forces them all. Either way the
    interruption then propagates at once.

    ``stuck`` is set when a release outlives its grace without letting go of the task.
    ``relay``: the task is not ours to abandon, so a release that outlives its grace must
    let go of it (``_relayed``).
    """
    timeout = (_config._current or _config.current()).release_timeout  # no call once loaded
    failures: list[Exception] = []
    try:
        for item in batch.items:
            if item.status != HELD:
                continue
            outcome = _start_release(batch, item, timeout)
            if outcome is None:
                continue
            if type(outcome) is _Suspended:
                outcome = await _finish_release(
                    batch, item, outcome, timeout, stuck=stuck, relay=relay
                )
                if outcome is None:
                    continue
            failures.append(outcome)  # type: ignore[arg-type]
    except (asyncio.CancelledError, GeneratorExit):
        _interrupted(batch, [i for i in batch.items if i.status == RELEASING])
        raise
    except BaseException:
        _interrupted(batch, batch.unsettled())
        raise
    return failures


def _interrupted(batch: Batch, items: list[Item]) -> None:
    why = "its release was interrupted"
    for item in items:
        force_item(batch, item, why=why)


class _Suspended:
    """A release that suspended on its first step: what to go on awaiting, and since when."""

    __slots__ = ("it", "signal", "started")

    def __init__(self, it: Any, signal: Any, started: float) -> None:
        self.it = it
        self.signal = signal
        self.started = started


def _start_release(
    batch: Batch, item: Item, timeout: float, _monotonic: Callable[[], float] = time.monotonic
) -> Exception | _Suspended | None:
    """Call the release function and run its awaitable up to its first suspension, here.

    Returns ``None`` once the item is settled gracefully, the failure once it is settled as
    failed, or a ``_Suspended`` for ``_finish_release`` to await under the deadline.
    """
    func = item.spec.release_func
    item.status = RELEASING
    if func is None:
        registry.settle(batch, item, "graceful_releases")
        return None
    started = _monotonic()
    it: Any = None
    try:
        result = func(item.resource)
        if type(result) is _Coroutine:  # the usual case: no other check
            it = result
        elif type(result) in PLAIN_TYPES:
            pass
        elif isawaitable_fast(result):
            # A ``@types.coroutine`` generator, a future, any ``__await__``: a coroutine that
            # awaits it follows the protocol exactly, errors included.
            it = _awaiting(result)
        elif callable(result):
            raise callable_result_error(item.spec.name, "release_func", result)
        if it is not None:
            item.release = it
            signal = it.send(None)
    except StopIteration:
        it = None
    except asyncio.CancelledError as exc:
        item.release = None
        if not _own_cancellation(asyncio.current_task()):
            raise  # Python 3.10 cannot tell: it counts as the task's cancellation
        # Nobody cancelled the task (it has not suspended): the release ended cancelled.
        failure = RuntimeError(f"the release of {item.spec.name!r} was cancelled")
        failure.__cause__ = exc
        settle_failed(batch, item, failure)
        return failure
    except Exception as exc:
        item.release = None
        if _monotonic() - started > timeout:
            warn_if_blocking(item, batch.state, started, "release function")
        settle_failed(batch, item, exc)
        return exc
    if _monotonic() - started > timeout:
        warn_if_blocking(item, batch.state, started, "release function")
    if it is None:
        item.release = None
        registry.settle(batch, item, "graceful_releases")
        return None
    return _Suspended(it, signal, started)


@types.coroutine
def _finish_release(
    batch: Batch,
    item: Item,
    suspended: _Suspended,
    timeout: float,
    *,
    stuck: asyncio.Future[None] | None,
    relay: bool,
) -> Generator[Any, Any, Exception | None]:
    """Await the rest of a release that suspended, bounded by what is left of ``timeout``.

    Delegates to the release's iterator as ``await`` (``yield from``) does, so the task sees
    exactly what the release yields and the release sees every cancellation of the task.
    With ``relay``, a future the release blocks on is waited for through ``_relayed``
    instead, which the task cannot be held by past the bound.
    """
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a coroutine always runs in a task here
        raise RuntimeError("release_batch() must run in a task")
    it, signal = suspended.it, suspended.signal
    left = max(0.0, timeout - (time.monotonic() - suspended.started))
    loop = task.get_loop()
    timer = _Deadline(loop, task, batch, item, timeout, left, stuck, relay)
    try:
        while True:
            if relay and _blocks_on_loop(signal, loop, task):
                try:
                    outcome = yield from _relayed(signal, timer, item)
                except GeneratorExit:
                    if item.release is not None:
                        stop_release(item)
                    raise
                except BaseException as thrown:  # thrown into the task's coroutine
                    outcome = thrown
                if outcome is _GivenUp or item.release is None:  # never resumed again
                    raise _GivenUp
                signal = it.send(None) if outcome is None else it.throw(outcome)
                continue
            try:
                sent = yield signal
            except GeneratorExit:
                if item.release is not None:  # not stopped already (it may resist that)
                    stop_release(item)
                raise
            except BaseException as thrown:
                if item.release is None:  # given up on (or stopped): never resumed again
                    raise _GivenUp from None
                signal = it.throw(thrown)
            else:
                if item.release is None:
                    raise _GivenUp
                signal = it.send(sent)
    except StopIteration:
        pass
    except _GivenUp:
        # Left for good: settled by whoever gave up on it (the deadline, or another owner that
        # stopped it). A cancellation of the task by others, if any, goes on.
        if timer.external_cancel():
            raise asyncio.CancelledError from None
        return None
    except asyncio.CancelledError as exc:
        if not timer.fired:
            if not _own_cancellation(task):
                raise
            # Nobody cancelled the task: the release itself ended cancelled.
            failure = RuntimeError(f"the release of {item.spec.name!r} was cancelled")
            failure.__cause__ = exc
            settle_failed(batch, item, failure)
            return failure
        if timer.external_cancel():
            raise
        _overran(batch, item, timeout)
        return None
    except Exception as exc:
        if not timer.fired:
            settle_failed(batch, item, exc)
            return exc
        _overran(batch, item, timeout)  # closed by the deadline: "cannot reuse ... coroutine"
        return None
    finally:
        timer.cancel()
        item.release = None
    registry.settle(batch, item, "graceful_releases")
    return None


class _GivenUp(Exception):
    """A release given up on while the task waited for it: it is left as it is.

    ``_relayed`` returns the class itself to say so.
    """


def _blocks_on_loop(signal: Any, loop: asyncio.AbstractEventLoop, task: object) -> bool:
    """True if ``signal`` is a future of ``loop`` that the task would block on (as ``Task``)."""
    if getattr(signal, "_asyncio_future_blocking", None) is not True or signal is task:
        return False
    get_loop = getattr(signal, "get_loop", None)
    return get_loop is not None and get_loop() is loop  # else the task reports the misuse


@types.coroutine
def _relayed(
    future: asyncio.Future[Any], timer: _Deadline, item: Item
) -> Generator[Any, None, BaseException | type[_GivenUp] | None]:
    """Wait for ``future`` as the task would, through a proxy future the deadline can resolve.

    The task waits on a proxy that ``future`` completes, so that giving up on the release
    frees the task even if ``future`` never completes (children that swallow every
    cancellation). A cancellation of the task reaches the proxy and is passed on to
    ``future``, as ``Task.cancel`` passes it to the future it waits on. Returns what the task
    would then do: ``None`` to resume the release, an exception to throw into it, or
    ``_GivenUp``.
    """
    future._asyncio_future_blocking = False
    loop = timer.loop
    cancelled: BaseException | None = None  # a cancellation ``future`` could not take

    future.add_done_callback(timer.wake)
    try:
        while not future.done():
            waiter = timer.waiter = loop.create_future()
            waiter._asyncio_future_blocking = True
            try:
                yield waiter
            except asyncio.CancelledError as exc:  # the task's cancellation, via the proxy
                if item.release is None:
                    return _GivenUp
                if not future.cancel(exc.args[0] if exc.args else None):
                    cancelled = exc  # as ``Task``: thrown once the future is done
                continue
            if item.release is None:
                return _GivenUp
    finally:
        timer.waiter = None
        future.remove_done_callback(timer.wake)
    if cancelled is not None:
        return cancelled
    try:
        future.result()
    except BaseException as exc:  # what ``Task`` would throw into the coroutine
        return exc
    return None


def _overran(batch: Batch, item: Item, timeout: float) -> None:
    force_item(
        batch,
        item,
        why=f"its release function ran longer than release_timeout={timeout}s",
        category=ReleaseTimeoutWarning,
    )


def _own_cancellation(task: asyncio.Task[Any] | None) -> bool:
    """True if a CancelledError came from the release itself, not a cancelled task (3.11+).

    Python 3.10 cannot tell the two apart; there it counts as the task's cancellation.
    """
    cancelling = getattr(task, "cancelling", None)
    return cancelling is not None and not cancelling()


class _Deadline:
    """The bound on one release: cancel the task at the deadline, give up on it after grace.

    Runs on the loop's own thread (timer callbacks). The cancellations it makes are undone
    with ``uncancel()`` (3.11+) once the release is over, so the caller's own cancel scopes
    (``asyncio.timeout``) are not confused by ours. Giving up settles the resource as forced
    (``ReleaseTimeoutWarning``) there and then, closes the release's coroutine, and tells
    ``stuck`` (if the task is ours) in case the task cannot even wake up. With ``relay``
    the task waits on ``waiter`` (``_relayed``): giving up resolves it, which wakes the task
    wherever the release is stuck.
    """

    __slots__ = (
        "_batch",
        "_cancels",
        "_handle",
        "_item",
        "_relay",
        "_stuck",
        "_task",
        "_timeout",
        "fired",
        "loop",
        "waiter",
    )

    def __init__(  # noqa: PLR0917 - built in one place, from what that place holds
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        batch: Batch,
        item: Item,
        timeout: float,
        delay: float,
        stuck: asyncio.Future[None] | None,
        relay: bool,
    ) -> None:
        self.loop = loop
        self._task = task
        self._batch = batch
        self._item = item
        self._timeout = timeout
        self._stuck = stuck
        self._relay = relay
        self.waiter: asyncio.Future[None] | None = None
        self._cancels = 0
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        if self._item.status != RELEASING:
            self.wake()
            return
        self.fired = True
        self._cancels += 1
        self._task.cancel()
        self._handle = self.loop.call_later(grace(self._timeout), self._abandon)

    def wake(self, _: object = None) -> None:
        """Resolve the proxy the task waits on (``relay``): it then leaves the release.

        Also the done-callback of the future the release blocks on (``_relayed``).
        """
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abandon(self) -> None:
        self._handle = None
        if self._item.status != RELEASING:
            self.wake()
            return
        _overran(self._batch, self._item, self._timeout)  # closes the release, forces it
        if self._relay:
            self.wake()  # the task waits on our proxy, or is not blocked at all
            return
        self._cancels += 1
        self._task.cancel()  # wake the task, if it can wake: the closed release raises there
        stuck = self._stuck
        if stuck is not None and not stuck.done():
            stuck.set_result(None)

    def external_cancel(self) -> bool:
        """Undo our cancellations; True if someone else's is pending as well (3.11+)."""
        uncancel = getattr(self._task, "uncancel", None)
        if uncancel is None:
            return False
        while self._cancels:
            self._cancels -= 1
            uncancel()
        return bool(self._task.cancelling())  # type: ignore[attr-defined, unused-ignore]

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._cancels:
            self.external_cancel()
