"""Releasing resources in custody: gracefully on their loop, or forcefully without it.

Custody
    Whoever takes resources out of the registry (``Registry.take``/``take_all``/``adopt``)
    gets a ``Batch`` and must see every item settled: by ``release_batch`` (on the running
    loop), ``release_on_loop`` (running an idle loop here) or ``force_batch``. Each item is
    settled exactly once, under the registry lock (``Registry.settle``); an owner that loses
    that race simply does not count the item. Every function here ends with the batch fully
    settled, whatever happens inside: a failing release is counted and logged, a release that
    overruns ``release_timeout`` is cancelled and, if it ignores the cancellation, closed; a
    ``BaseException`` (KeyboardInterrupt, SystemExit, a cancellation from outside) forces what
    is left *before* it propagates. So ``acquisitions == graceful + forced + failures + live``
    holds whenever no release is midway.

Graceful
    ``release_func`` runs on the resource's own loop, in the calling task (no task per
    release), bounded by a timer: after ``release_timeout`` the task is cancelled; a release
    still running ``grace`` later has its coroutine closed, which ends it for good, and the
    resource is forced. The bound is hard: nothing of ours stays pending on the loop.

Forced
    The loop can no longer run (closed, collected, or the release overran): the template's
    ``force_release_func`` runs, synchronously, in whatever thread noticed; a synchronous
    ``release_func`` stands in for it. An awaitable that cannot run is closed, never dropped,
    and the warning says so.

Nothing here raises a release function's ``Exception``: failures are logged on the
``resourceloop`` logger, counted, and returned to the caller (the manager raises them).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Generator
from typing import Any, Final

from . import _config
from ._compat import iscoroutinefunction
from ._registry import registry
from ._state import HELD, RELEASING, SETTLED, Batch, Item, LoopState
from .warnings import (
    BlockingReleaseWarning,
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    ResourceLoopWarning,
)

__all__ = [
    "force_batch",
    "grace",
    "isawaitable_fast",
    "release_batch",
    "release_on_loop",
    "warn",
]

logger = logging.getLogger("resourceloop")

#: Frames of these modules are skipped when a warning looks for the code to blame.
_INTERNAL_MODULES = ("resourceloop", "asyncio", "threading", "concurrent", "weakref", "atexit")

#: A release that ignores its cancellation is closed this long after it was cancelled, as a
#: fraction of ``release_timeout`` and at most ``_MAX_GRACE`` seconds.
_GRACE_FRACTION: Final = 0.25
_MAX_GRACE: Final = 1.0


#: Types whose instances are never awaitable (what release functions usually return), so
#: that ``isawaitable_fast`` answers them without ``inspect.isawaitable``'s ABC check.
_PLAIN_TYPES: set[type] = {type(None), bool, int, str}
_Coroutine: Final = types.CoroutineType


def isawaitable_fast(obj: object) -> bool:
    """``inspect.isawaitable``, remembering the types found plain."""
    cls = type(obj)
    if cls is types.CoroutineType:
        return True
    if cls in _PLAIN_TYPES:
        return False
    if inspect.isawaitable(obj):
        return True
    # A generator's flags, not its type, decide; and a few dozen types are plenty to remember.
    if not isinstance(obj, types.GeneratorType) and len(_PLAIN_TYPES) < 64:
        _PLAIN_TYPES.add(cls)
    return False


def grace(timeout: float) -> float:
    """How long a cancelled release may take to end before it is closed."""
    return min(timeout * _GRACE_FRACTION, _MAX_GRACE)


def _blamed_frame() -> types.FrameType:
    """The innermost frame outside resourceloop and the standard machinery that runs it."""
    caller = sys._getframe(2)
    frame: types.FrameType | None = caller
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(_INTERNAL_MODULES):
            return frame
        frame = frame.f_back
    return caller


def warn(category: type[ResourceLoopWarning], message: str, *, may_raise: bool = False) -> None:
    """Emit a warning that points at the user's code.

    Each message names a loop, so no two are alike; ``warnings.warn`` would remember every one
    of them in a ``__warningregistry__`` under the "default" action (as with ``-X dev``), a
    leak that grows with every loop. ``warn_explicit`` with no registry remembers none.

    A filter that turns the warning into an error raises it only where ``may_raise`` says the
    caller is the user's own code path; from the close hook, the reaper or a release it would
    break the cleanup itself, so there the message is logged on the ``resourceloop`` logger.
    """
    frame = _blamed_frame()
    try:
        warnings.warn_explicit(
            message,
            category,
            frame.f_code.co_filename,
            frame.f_lineno,
            module=frame.f_globals.get("__name__", "resourceloop"),
            registry=None,
        )
    except Exception:
        if may_raise:
            raise
        logger.warning("%s: %s", category.__name__, message)
    finally:
        del frame


def _failed(item: Item, state: LoopState, exc: BaseException) -> None:
    logger.error(
        "release of %r on %s failed",
        item.spec.name,
        state.origin,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _settle_failed(batch: Batch, item: Item, exc: BaseException) -> None:
    if registry.settle(batch, item, "release_failures"):
        _failed(item, batch.state, exc)


def _check_blocking(item: Item, state: LoopState, started: float, what: str) -> None:
    """Report a user call that held its thread past ``release_timeout`` (nothing can stop it)."""
    elapsed = time.monotonic() - started
    timeout = _config.current().release_timeout
    if elapsed > timeout:
        warn(
            BlockingReleaseWarning,
            f"the {what} of {item.spec.name!r} on {state.origin} blocked its thread for "
            f"{elapsed:.2f}s, longer than release_timeout={timeout}s, which cannot interrupt "
            "blocking code. Make it async (await the blocking work in a thread with "
            "asyncio.to_thread) or make it return sooner.",
        )


# -- forced -------------------------------------------------------------------------------------


def force_batch(
    batch: Batch,
    *,
    why: str,
    category: type[ResourceLoopWarning] = ForcedReleaseWarning,
    quiet: bool = False,
) -> None:
    """Force every unsettled item of ``batch``, from any thread.

    A ``BaseException`` from a force function does not stop the others; the first one is
    re-raised once every item is settled.
    """
    interrupted: BaseException | None = None
    for item in batch.items:
        if item.status == SETTLED:
            continue
        try:
            force_item(batch, item, why=why, category=category, quiet=quiet)
        except BaseException as exc:  # settled already; finish the others first
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


def force_item(
    batch: Batch,
    item: Item,
    *,
    why: str,
    category: type[ResourceLoopWarning] = ForcedReleaseWarning,
    quiet: bool = False,
) -> None:
    """Force one item, unless another owner settled it first."""
    if item.status == RELEASING:
        _stop_release(item)
    spec = item.spec
    func = spec.force_release_func
    if func is None and not iscoroutinefunction(spec.release_func):
        func = spec.release_func
    if not registry.claim(batch, item):
        return  # another owner settled it first
    # From here this owner alone calls the force function; the count follows it, so the books
    # are off by one only while that function runs.
    outcome = "forced_releases"
    not_done = False
    started = time.monotonic()
    try:
        if func is not None:
            result = func(item.resource)
            if inspect.isawaitable(result):
                _close_awaitable(result)
                not_done = True
    except Exception as exc:
        outcome = "release_failures"
        _failed(item, batch.state, exc)
    finally:
        registry.count(outcome)
        _check_blocking(item, batch.state, started, "forced release")
    if category is ReleaseTimeoutWarning:
        registry.count("release_timeouts")
    if not quiet:
        _warn_forced(item, batch.state, why, category, func=func, not_done=not_done)


def _warn_forced(
    item: Item,
    state: LoopState,
    why: str,
    category: type[ResourceLoopWarning],
    *,
    func: Callable[[Any], Any] | None,
    not_done: bool,
) -> None:
    if category is ReleaseTimeoutWarning:
        advice = (
            "Make the release function finish sooner (no unbounded waits), or raise the bound "
            "with resourceloop.configure(release_timeout=...)"
        )
    else:
        advice = (
            "Close the loop with asyncio.run()/asyncio.Runner or loop.close() while the close "
            "hook is enabled, or wrap the work in `async with resource_manager():`"
        )
    what = ""
    if not_done:
        what = (
            " Its release function returned an awaitable, which cannot run without the loop: "
            "it was closed, and nothing was released."
        )
    elif func is None:
        what = " The template has no synchronous release, so nothing was released."
    if item.spec.force_release_func is None and (not_done or func is None):
        advice += "; pass force_release_func= so the template can close it without its loop"
    warn(
        category,
        f"resource {item.spec.name!r} of {state.origin} was released forcefully because "
        f"{why}.{what} {advice}.",
    )


def _close_awaitable(awaitable: Any) -> None:
    """Dispose of an awaitable that can never run, without a "never awaited" warning."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    elif asyncio.isfuture(awaitable):
        loop = awaitable.get_loop()
        if not loop.is_closed() and not loop.is_running():
            awaitable.cancel()
    else:
        close = getattr(awaitable, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # pragma: no cover - a foreign close() failed: nothing to do
                logger.debug("could not close %r", awaitable, exc_info=True)


def _stop_release(item: Item) -> None:
    """End a graceful release that another owner is abandoning: close its coroutine."""
    release, item.release = item.release, None
    if release is None or not inspect.iscoroutine(release):
        return
    try:
        release.close()
    except RuntimeError:  # it ignored GeneratorExit and awaits again: nothing can stop it
        logger.error(
            "the release of %r ignored GeneratorExit; it cannot be stopped", item.spec.name
        )
    except Exception:  # it raised from a finally clause: it is over all the same
        logger.debug("abandoned release of %r raised on close", item.spec.name, exc_info=True)


# -- graceful -----------------------------------------------------------------------------------


async def release_batch(batch: Batch) -> list[Exception]:
    """Release every unsettled item of ``batch`` on the running loop, newest first.

    Runs in the calling task. Failures are returned (and logged). If the task is cancelled
    from outside, the release in progress is forced (it was cut short) and the ones not begun
    stay in custody on the loop's state, for its close hook or the reaper to release; any
    other ``BaseException`` forces them all. Either way the interruption then propagates at
    once.

    A release that finishes without suspending (a synchronous ``release_func``, or a
    coroutine that never waits) costs no timer: the deadline is armed only once a release
    actually suspends, for what is left of ``release_timeout``.
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
                outcome = await _finish_release(batch, item, outcome, timeout)
                if outcome is None:
                    continue
            failures.append(outcome)  # type: ignore[arg-type]
    except asyncio.CancelledError:
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
    try:
        result = func(item.resource)
        # A coroutine (the usual case) needs no ``isawaitable`` call.
        if type(result) is _Coroutine or (result is not None and isawaitable_fast(result)):
            item.release = result
            # The first step runs here, as ``await`` would run it: most releases end without
            # ever suspending, and then need no timer.
            it = result if type(result) is _Coroutine else result.__await__()
            signal = it.send(None)
        else:
            it = None
    except StopIteration:
        it = None
    except asyncio.CancelledError as exc:
        item.release = None
        if not _own_cancellation(asyncio.current_task()):
            raise  # Python 3.10 cannot tell: it counts as the task's cancellation
        # Nobody cancelled the task (it has not suspended): the release ended cancelled.
        failure = RuntimeError(f"the release of {item.spec.name!r} was cancelled")
        failure.__cause__ = exc
        _settle_failed(batch, item, failure)
        return failure
    except Exception as exc:
        item.release = None
        if _monotonic() - started > timeout:
            _check_blocking(item, batch.state, started, "release function")
        _settle_failed(batch, item, exc)
        return exc
    if _monotonic() - started > timeout:
        _check_blocking(item, batch.state, started, "release function")
    if it is None:
        item.release = None
        registry.settle(batch, item, "graceful_releases")
        return None
    return _Suspended(it, signal, started)


@types.coroutine
def _finish_release(
    batch: Batch, item: Item, suspended: _Suspended, timeout: float
) -> Generator[Any, Any, Exception | None]:
    """Await the rest of a release that suspended, bounded by what is left of ``timeout``.

    Delegates to the release's iterator as ``await`` (``yield from``) does, so the task sees
    exactly what the release yields and the release sees every cancellation of the task.
    """
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a coroutine always runs in a task here
        raise RuntimeError("release_batch() must run in a task")
    it, signal = suspended.it, suspended.signal
    left = max(0.0, timeout - (time.monotonic() - suspended.started))
    timer = _Deadline(task.get_loop(), task, item, timeout, left)
    try:
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as thrown:
                signal = it.throw(thrown)
            else:
                signal = it.send(sent)
    except StopIteration:
        pass
    except asyncio.CancelledError as exc:
        if not timer.fired:
            if not _own_cancellation(task):
                raise
            # Nobody cancelled the task: the release itself ended cancelled.
            failure = RuntimeError(f"the release of {item.spec.name!r} was cancelled")
            failure.__cause__ = exc
            _settle_failed(batch, item, failure)
            return failure
        if timer.external_cancel():
            raise
        _overran(batch, item, timeout)
        return None
    except Exception as exc:
        if not timer.fired:
            _settle_failed(batch, item, exc)
            return exc
        _overran(batch, item, timeout)  # closed by the deadline: "cannot reuse ... coroutine"
        return None
    finally:
        timer.cancel()
        item.release = None
    registry.settle(batch, item, "graceful_releases")
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
    """The bound on one release: cancel the task at the deadline, close the release after grace.

    Runs on the loop's own thread (timer callbacks). The cancellations it makes are undone
    with ``uncancel()`` (3.11+) once the release is over, so the caller's own cancel scopes
    (``asyncio.timeout``) are not confused by ours.
    """

    __slots__ = ("_cancels", "_handle", "_item", "_loop", "_task", "_timeout", "fired")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        item: Item,
        timeout: float,
        delay: float | None = None,
    ) -> None:
        self._loop = loop
        self._task = task
        self._item = item
        self._timeout = timeout
        self._cancels = 0
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_later(
            timeout if delay is None else delay, self._expire
        )

    def _expire(self) -> None:
        if self._item.status != RELEASING:
            return
        self.fired = True
        self._cancels += 1
        self._task.cancel()
        self._handle = self._loop.call_later(grace(self._timeout), self._abandon)

    def _abandon(self) -> None:
        self._handle = None
        if self._item.status != RELEASING:
            return
        _stop_release(self._item)
        self._cancels += 1
        self._task.cancel()  # wake the task: the closed release raises at its await

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


# -- running an idle loop to release --------------------------------------------------------------


def release_on_loop(
    loop: asyncio.AbstractEventLoop, state: LoopState, batch: Batch, *, why: str
) -> None:
    """Release ``batch`` gracefully by running ``loop``, idle, in this thread; then settle all.

    Also waits for creations still in flight on the loop (their late resources are released
    on the loop by the creation itself). Handles a ``stop()`` scheduled before the run by
    running again, bounded in time. Whatever is not released when this ends, for any reason
    (the loop started running elsewhere, closed, the bound passed, a ``BaseException``), is
    forced before this returns or raises.

    The caller guarantees that nobody else runs the loop meanwhile and that this thread runs
    no loop of its own.
    """
    timeout = _config.current().release_timeout
    creations = list(state.pending.values()) if state.pending else []
    # Resources a cancelled manager exit left in custody are released here too.
    batches = [batch]
    if state.batches and (len(state.batches) > 1 or batch not in state.batches):
        batches += [b for b in registry.batches_of(state) if b is not batch]
    held = 0
    for each in batches:
        for item in each.items:
            if item.status == HELD:
                held += 1
    if not held and not creations:
        for leftover in batches:
            if leftover.items:
                force_batch(leftover, why=why)
        return
    deadline = time.monotonic() + (held + len(creations) + 1) * (timeout + grace(timeout))
    runner: asyncio.Future[Any] | None = None
    try:
        runner = loop.create_task(_release_then_wait(batches, creations, timeout))
        while not runner.done() and time.monotonic() < deadline:
            try:
                loop.run_until_complete(runner)
            except RuntimeError:
                if loop.is_closed() or loop.is_running():
                    break
                # "Event loop stopped before Future completed": a stop() was pending; run on.
            except Exception:
                break  # the runner's own failure: nothing of it is left to wait for
    finally:
        if runner is not None and not runner.done():
            runner.cancel()
            runner._log_destroy_pending = False  # type: ignore[attr-defined]
            coro = runner.get_coro()  # type: ignore[attr-defined]
            if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == "CORO_CREATED":
                coro.close()  # interrupted before its first step: it never will run
        elif runner is not None and not runner.cancelled():
            runner.exception()  # raised here already (a KeyboardInterrupt): mark it seen
        for leftover in batches:
            force_batch(leftover, why=why)
        if state.batches:
            for leftover in registry.batches_of(state):
                force_batch(leftover, why=why)


async def _release_then_wait(
    batches: list[Batch], creations: list[asyncio.Future[Any]], timeout: float
) -> None:
    # Creations in flight cannot hand their resource to anyone now: cancel them, and wait
    # (bounded) for them to end; one that finishes all the same releases its late resource
    # on the loop itself (``ResourceTemplate._stored``), and that is waited for here too.
    for creation in creations:
        creation.cancel()
    for batch in batches:
        await release_batch(batch)
    if creations:
        await asyncio.wait(creations, timeout=timeout + grace(timeout))


def run_elsewhere(target: Callable[[], None], *, timeout: float) -> None:
    """Run ``target`` in a short-lived helper thread and wait for it at most ``timeout``.

    For a thread that runs a loop of its own and so cannot run another one.
    """
    helper = threading.Thread(target=target, name="resourceloop-release", daemon=True)
    helper.start()
    helper.join(min(timeout, threading.TIMEOUT_MAX))
