"""Forced releases, and the warnings that say so: for resources whose loop can no longer run.

The loop is closed, collected, or a release overran: the template's ``force_release_func``
runs, synchronously, in whatever thread noticed; a synchronous ``release_func`` stands in for
it. An awaitable that cannot run is closed, never dropped, and the warning says so. Each item
is claimed first (``Registry.claim``), so no other owner calls the force function a second
time, then counted once.

Nothing here raises a release function's ``Exception``: failures are logged on the
``resourceloop`` logger and counted. The graceful path is in ``_release``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import logging
import sys
import time
import types
import warnings
from collections.abc import Callable, Generator
from typing import Any

from . import _config
from ._compat import iscoroutinefunction
from ._registry import registry
from ._state import RELEASING, SETTLED, Batch, Item, LoopState, Spec
from .warnings import (
    BlockingReleaseWarning,
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    ResourceLoopWarning,
)

__all__ = [
    "Abandonable",
    "abandon_task",
    "callable_result_error",
    "force_batch",
    "force_item",
    "settle_failed",
    "stop_release",
    "warn",
    "warn_if_blocking",
]

logger = logging.getLogger("resourceloop")

#: Frames of these modules are skipped when a warning looks for the code to blame.
_INTERNAL_MODULES = ("resourceloop", "asyncio", "threading", "concurrent", "weakref", "atexit")


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


def settle_failed(batch: Batch, item: Item, exc: BaseException) -> None:
    if registry.settle(batch, item, "release_failures"):
        _failed(item, batch.state, exc)


def warn_if_blocking(item: Item, state: LoopState, started: float, what: str) -> None:
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
        stop_release(item)
    spec = item.spec
    func = spec.force_release_func
    if func is None and not iscoroutinefunction(spec.release_func):
        func = spec.release_func
    # From the claim on, this owner alone calls the force function, and the outcome is counted
    # in the ``finally`` whatever interrupts it: the books are off by one only while it runs.
    outcome = "forced_releases"
    claimed = False
    not_done = False
    started = 0.0
    try:
        claimed = registry.claim(batch, item)
        if not claimed:
            return  # another owner settled it first
        started = time.monotonic()
        if func is not None:
            result = func(item.resource)
            if result is not None and inspect.isawaitable(result):
                _close_awaitable(result)
                not_done = True
            elif callable(result):
                raise callable_result_error(spec.name, _func_name(spec, func), result)
    except Exception as exc:
        outcome = "release_failures"
        _failed(item, batch.state, exc)
    finally:
        if claimed:
            registry.count(outcome)
            warn_if_blocking(item, batch.state, started, "forced release")
    if category is ReleaseTimeoutWarning:
        registry.count("release_timeouts")
    if not quiet:
        _warn_forced(item, batch.state, why, category, func=func, not_done=not_done)


def _func_name(spec: Spec, func: Callable[[Any], Any]) -> str:
    return "force_release_func" if func is spec.force_release_func else "release_func"


def callable_result_error(name: str, what: str, result: object) -> TypeError:
    """The error for a release function that returned a function instead of calling it."""
    return TypeError(
        f"the {what} of template {name!r} returned {result!r}, a callable, so nothing was "
        f"released: it returned the close function instead of calling it. Write "
        f"`lambda r: r.close()` rather than `lambda r: r.close` (or pass the method itself, "
        f"e.g. `{what}=ClientSession.close`)"
    )


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


def stop_release(item: Item) -> None:
    """End a graceful release that another owner is abandoning: close its coroutine."""
    release, item.release = item.release, None
    if release is None or not hasattr(release, "close"):
        return
    try:
        release.close()
    except RuntimeError:  # it ignored GeneratorExit and awaits again: nothing can stop it
        # Kept referenced: its finalizer would close it again, anywhere, and a retry loop
        # with a bare ``except:`` can spin there for ever (no running loop to await on).
        registry.unstoppable.append(release)
        logger.error(
            "the release of %r ignored GeneratorExit; it cannot be stopped, and is kept "
            "referenced so that the garbage collector does not run it again",
            item.spec.name,
        )
    except Exception:  # it raised from a finally clause: it is over all the same
        logger.debug("abandoned release of %r raised on close", item.spec.name, exc_info=True)


class Abandonable(collections.abc.Coroutine[Any, Any, Any]):
    """A task's coroutine that an owner can stop for good, whatever the task does after.

    Delegates to ``inner`` as ``await`` would. ``abandon()`` closes ``inner`` (its ``finally``
    clauses run there and then) and leaves this coroutine finished: if the loop steps the task
    again (the owner runs the loop once more), it ends quietly, instead of failing with
    "cannot reuse already awaited coroutine" and being reported as a task exception never
    retrieved.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def send(self, value: Any) -> Any:
        inner = self._inner
        if inner is None:
            raise StopIteration
        return inner.send(value)

    def throw(self, exc: Any, value: Any = None, tb: Any = None) -> Any:
        inner = self._inner
        if inner is None:
            raise StopIteration
        if value is None and tb is None:
            return inner.throw(exc)
        return inner.throw(exc, value, tb)  # pragma: no cover - the deprecated form

    def close(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self

    def __iter__(self) -> Abandonable:
        return self

    def __next__(self) -> Any:
        return self.send(None)


def abandon_task(task: asyncio.Future[Any]) -> None:
    """Stop a task of ours for good, now, and quietly.

    Its coroutine is closed here (its ``finally`` clauses run now, and a release it awaits is
    closed with it), it is cancelled so that a loop that runs again finishes it, and asyncio
    is told not to report it pending when it is dropped.
    """
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    if task.done():
        return
    coro = task.get_coro()  # type: ignore[attr-defined]
    try:
        if coro is not None:
            coro.close()
    except RuntimeError:  # it ignored GeneratorExit and awaits again: nothing can stop it
        logger.error("a release ignored GeneratorExit; it cannot be stopped", exc_info=True)
    except Exception:  # it raised from a finally clause: it is over all the same
        logger.debug("an abandoned release raised on close", exc_info=True)
    finally:
        loop = task.get_loop()
        if not loop.is_closed():
            try:
                task.cancel()
            except RuntimeError:  # pragma: no cover - closed in between
                pass
