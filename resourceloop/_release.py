"""Releasing one loop's resources: gracefully on the loop, or forcefully off it.

Whoever takes a resource out of the registry (``Registry.take``/``take_all``) owns its release
and calls exactly one of the functions here for it, so each resource is released exactly once.

Graceful means the template's ``release_func`` runs on the resource's own loop and is awaited
there, bounded by ``release_timeout``. Forced means the loop can no longer run (closed,
collected, or the release timed out): the template's ``force_release_func`` runs, synchronously,
in whatever thread noticed; a synchronous ``release_func`` stands in for it; an ``async``
release function is never called, because its coroutine could not run anywhere.

Nothing here raises a release function's failure: failures are logged on the ``resourceloop``
logger, counted, and returned to the caller (the manager raises them together).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from . import _config
from ._compat import get_running_loop_or_none, iscoroutinefunction
from ._registry import READY_ATTR, LoopState, registry
from .warnings import ForcedReleaseWarning, ReleaseTimeoutWarning, ResourceLoopWarning

__all__ = [
    "TemplateLike",
    "drop_ready",
    "release_forcefully",
    "release_gracefully",
    "release_on_idle_loop",
    "warn",
]

logger = logging.getLogger("resourceloop")


class TemplateLike(Protocol):
    """What releasing needs from a ``ResourceTemplate`` (this module never imports it)."""

    @property
    def name(self) -> str: ...
    @property
    def release_func(self) -> Callable[[Any], Any] | None: ...
    @property
    def force_release_func(self) -> Callable[[Any], Any] | None: ...


Taken = list[tuple[Hashable, Any]]


#: Frames of these modules are skipped when a warning looks for the code to blame.
_INTERNAL_MODULES = ("resourceloop", "asyncio", "threading", "concurrent", "weakref", "atexit")


def _blamed_frame() -> types.FrameType:
    """The innermost frame outside resourceloop and the standard machinery that runs it.

    That is the user's coroutine for a warning raised while it acquires, their ``asyncio.run``
    or ``loop.close()`` call for the close hook; the reaper thread has none, and then our own
    caller is named.
    """
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
    of them in a ``__warningregistry__`` under the "default" action (as with ``-X dev`` or
    ``-W default``), a leak that grows with every loop. ``warn_explicit`` with no registry
    shows them the same way and remembers none.

    A filter that turns the warning into an error (``-W error``, pytest's
    ``filterwarnings = ["error"]``) raises it only where ``may_raise`` says the caller is the
    user's own code path; from the close hook, the reaper or a release it would break the
    cleanup itself, so there the message is logged on the ``resourceloop`` logger instead.
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


def drop_ready(loop: asyncio.AbstractEventLoop | None, template: Hashable | None = None) -> None:
    """Forget the loop's cached ready future for one template (or all of them)."""
    if loop is None:
        return
    try:
        ready = vars(loop).get(READY_ATTR)
    except TypeError:  # a loop class without __dict__ has no cache
        return
    if ready is None:
        return
    if template is None:
        ready.clear()
    else:
        ready.pop(template, None)


def _failed(template: TemplateLike, state: LoopState, exc: BaseException) -> None:
    registry.count("release_failures")
    logger.error(
        "release of %r on %s failed", template.name, state.origin, exc_info=(type(exc), exc, None)
    )


async def _release_one(
    template: TemplateLike, resource: Any, state: LoopState, timeout: float
) -> Exception | None:
    """Release one resource on the running loop; return its failure, if any."""
    func = template.release_func
    if func is None:
        registry.count("graceful_releases")
        return None
    try:
        result = func(resource)
    except BaseException as exc:
        _failed(template, state, exc)  # counted before KeyboardInterrupt and kin propagate
        if not isinstance(exc, Exception):
            raise
        return exc
    if not inspect.isawaitable(result):
        registry.count("graceful_releases")
        return None
    # A task, not a plain await: the bound must hold even if the release ignores cancellation.
    # One task from the release's first step to its last: code bound to its task (anyio's
    # cancel scopes in httpx's aclose(), asyncio.timeout) fails if its steps change task. On
    # 3.12+ the task starts eagerly, so a release that never suspends finishes right here.
    task: asyncio.Future[Any]
    if sys.version_info >= (3, 12) and inspect.iscoroutine(result):
        task = asyncio.Task(result, loop=asyncio.get_running_loop(), eager_start=True)
    else:
        task = asyncio.ensure_future(result)
    try:
        if not task.done():
            # Its first step was scheduled before our wake-up, so one trip around the loop
            # runs it: enough for most releases, with no waiter and no timer.
            await asyncio.sleep(0)
        if task.done():
            return _account(template, state, task)
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        # The caller is cancelled, the release is not: account for it when it ends.
        task.add_done_callback(lambda t: _account(template, state, t))
        raise
    if done:
        return _account(template, state, task)
    task.cancel()
    task.add_done_callback(_swallow)
    _log_destroy_pending(task)
    registry.count("release_timeouts")
    _force_one(
        template,
        resource,
        state,
        why=f"its release function ran longer than release_timeout={timeout}s",
        category=ReleaseTimeoutWarning,
    )
    return None


def _account(
    template: TemplateLike, state: LoopState, task: asyncio.Future[Any]
) -> Exception | None:
    if task.cancelled():
        exc: Exception = RuntimeError(f"the release of {template.name!r} was cancelled")
        _failed(template, state, exc)
        return exc
    failure = task.exception()
    if failure is None:
        registry.count("graceful_releases")
        return None
    _failed(template, state, failure)  # counted before KeyboardInterrupt and kin propagate
    if not isinstance(failure, Exception):
        raise failure
    return failure


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _log_destroy_pending(task: asyncio.Future[Any]) -> None:
    # An abandoned release may still be pending when its loop closes; asyncio would then log
    # "Task was destroyed but it is pending!" although we already warned about it.
    try:
        task._log_destroy_pending = False  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - a Task implementation without the flag
        pass


async def release_gracefully(state: LoopState, taken: Taken) -> list[Exception]:
    """Release ``taken`` (consumed from the front) on the running loop, all of them.

    A failing release never stops the others. If the calling task is cancelled meanwhile,
    the remaining releases still run, then the cancellation is re-raised.
    """
    loop = asyncio.get_running_loop()
    timeout = _config.current().release_timeout
    failures: list[Exception] = []
    cancelled: asyncio.CancelledError | None = None
    while taken:
        template, resource = taken.pop(0)
        drop_ready(loop, template)
        try:
            failure = await _release_one(template, resource, state, timeout)  # type: ignore[arg-type]
        except asyncio.CancelledError as exc:
            cancelled = exc
            continue
        if failure is not None:
            failures.append(failure)
    if cancelled is not None:
        raise cancelled
    return failures


def _force_one(
    template: TemplateLike,
    resource: Any,
    state: LoopState,
    *,
    why: str,
    category: type[ResourceLoopWarning] = ForcedReleaseWarning,
) -> None:
    func = template.force_release_func
    if func is None and not iscoroutinefunction(template.release_func):
        func = template.release_func
    try:
        if func is not None:
            result = func(resource)
            if inspect.iscoroutine(result):
                result.close()  # it could not run anywhere: say so quietly, not "never awaited"
    except Exception as exc:
        _failed(template, state, exc)
    registry.count("forced_releases")
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
    if template.force_release_func is None and func is None:
        advice += "; pass force_release_func= so the template can close it without its loop"
    warn(
        category,
        f"resource {template.name!r} of {state.origin} was released forcefully because {why}. "
        f"{advice}.",
    )


def release_forcefully(state: LoopState, taken: Taken, *, why: str) -> None:
    """Release ``taken`` without its loop, from any thread; never raises."""
    while taken:
        template, resource = taken.pop(0)
        _force_one(template, resource, state, why=why)  # type: ignore[arg-type]


def release_on_idle_loop(
    loop: asyncio.AbstractEventLoop, state: LoopState, taken: Taken, *, why: str
) -> None:
    """Release gracefully on a loop that is neither running nor closed, by running it here.

    The loop must be one nobody else will run meanwhile (its thread is gone, or the interpreter
    is exiting). A thread that runs a loop of its own cannot run another one, so from there the
    work moves to a short-lived helper thread. What could not be released on the loop (it
    started running elsewhere, or closed, in between) is released forcefully.
    """
    if not taken:
        return
    if get_running_loop_or_none() is not None:
        helper = threading.Thread(
            target=release_on_idle_loop,
            args=(loop, state, taken),
            kwargs={"why": why},
            name="resourceloop-release",
            daemon=True,
        )
        helper.start()
        helper.join(_config.current().release_timeout * (len(taken) + 1))
        return
    try:
        loop.run_until_complete(release_gracefully(state, taken))
    except Exception as exc:
        logger.debug("could not run %s to release its resources: %r", state.origin, exc)
    finally:
        release_forcefully(state, taken, why=why)
