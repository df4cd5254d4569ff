"""Releasing a loop's resources gracefully, on the loop, just before it closes.

The primary hook wraps ``close`` on the loop *instance* (never the class), as asyncio-atexit
does: whoever closes the loop (``asyncio.run``, ``asyncio.Runner``, asgiref, ``uvloop.run`` or
user code) calls the wrapper, which runs the releases on the still-open loop and then the
original ``close``. The wrapper refers to its loop weakly and calls the class's ``close``
unbound, so it adds no reference cycle, and it works for uvloop's builtin ``close``.

Where ``close`` cannot be replaced on the instance, a fallback watches the loop's async
generators: ``loop.shutdown_asyncgens()``, which ``asyncio.run``, ``Runner`` and asgiref call
right before ``close()``, finalizes ours, and its ``finally`` clause releases. A loop closed
without either is left to the reaper.

Guarantees: the wrapper never releases when the loop is running (``close`` will raise) or
already closed (``close`` is a no-op), never wraps a loop twice, and never raises out of
``close`` on its own account.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

from . import _config
from ._compat import get_running_loop_or_none
from ._errors import LoopClosedError
from ._registry import READY_ATTR, LoopState, registry
from ._release import release_gracefully, release_on_idle_loop

__all__ = ["fail_remote_waiters", "finish_closing", "install_asyncgen_hook", "install_close_hook"]

logger = logging.getLogger("resourceloop")

_MARK: Final = "__resourceloop_close_hook__"


def install_close_hook(loop: asyncio.AbstractEventLoop) -> bool:
    """Wrap ``loop.close`` on the instance; False if this loop cannot be wrapped."""
    try:
        existing = vars(loop).get("close")
    except TypeError:  # no instance __dict__
        return False
    if getattr(existing, _MARK, False):
        return True
    loop_ref = weakref.ref(loop)
    close = _make_close(loop_ref, existing, type(loop).close)
    try:
        loop.close = close  # type: ignore[method-assign]
    except (AttributeError, TypeError):
        return False
    return vars(loop).get("close") is close


def _make_close(
    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop],
    bound_close: Callable[[], None] | None,
    class_close: Callable[[Any], None],
) -> Callable[[], None]:
    def close() -> None:
        loop = loop_ref()
        if loop is not None:
            _before_close(loop)
        else:
            # ``BaseEventLoop.__del__`` calls ``self.close()`` on a collected, unclosed loop.
            # Up to 3.14 the cyclic collector clears weak references before it runs
            # finalizers, so ours is dead by then; find the loop as that caller's ``self``
            # (checked by identity) so that its selector and self-pipe are still closed.
            # From 3.15 it clears references without a callback only afterwards: ours is
            # alive and the branch above runs, where ``registry.get`` finds nothing (the
            # registry's weak key, which has a callback, is already cleared), so nothing is
            # released from inside a finalizer. tests/test_pythons.py checks both.
            try:
                caller = sys._getframe(1).f_locals.get("self")
            except ValueError:  # pragma: no cover - called with no Python frame above
                caller = None
            if getattr(caller, "__dict__", {}).get("close") is close:
                loop = caller
        if bound_close is not None:
            bound_close()  # someone else's wrapper, installed before ours: keep the chain
        elif loop is not None:
            class_close(loop)

    setattr(close, _MARK, True)
    close.__doc__ = "Release this loop's resourceloop resources, then close it."
    return close


def _before_close(loop: asyncio.AbstractEventLoop) -> None:
    try:
        if loop.is_running() or loop.is_closed():
            return
        if not _config.current().close_hook:
            return  # disabled after installation: the reaper releases, forcefully, and warns
        state = registry.get(loop)
        if state is None or state.discarded:
            return
        taken = registry.take_all(state, closing=True)
        # Closed from a coroutine of another loop, this thread cannot run ``loop``; then a
        # helper thread does, so the release is still graceful, on the loop.
        release_on_idle_loop(loop, state, taken, why="it could not run before closing")
        finish_closing(loop, state)
    except Exception:  # pragma: no cover - never break loop.close() on our account
        logger.exception("resourceloop close hook failed")


def fail_remote_waiters(state: LoopState) -> None:
    """Fail cross-thread acquisitions that the loop will never run now."""
    while state.remote:
        waiter = state.remote.pop()
        if not waiter.done():
            try:
                waiter.set_exception(LoopClosedError(f"{state.origin} closed before acquiring"))
            except Exception:  # pragma: no cover - it completed in between
                pass


def finish_closing(loop: asyncio.AbstractEventLoop | None, state: LoopState) -> None:
    """Untrack a loop whose resources are all released: it ends or is about to."""
    fail_remote_waiters(state)
    if loop is not None:
        try:
            vars(loop).pop(READY_ATTR, None)
        except TypeError:
            pass
    registry.discard(state)
    _close_asyncgen_hook(state)


# -- fallback: a watcher finalized by loop.shutdown_asyncgens() --------------------------------


def install_asyncgen_hook(loop: asyncio.AbstractEventLoop, state: LoopState) -> bool:
    """Start the watcher on ``loop``, which must be the running loop of this thread."""
    if get_running_loop_or_none() is not loop or sys.get_asyncgen_hooks().firstiter is None:
        return False
    watcher = _watch(weakref.ref(state))
    step = watcher.asend(None)  # registers with the loop through its firstiter hook
    try:
        step.send(None)
    except StopIteration:
        pass
    state.asyncgen_hook = watcher
    return True


async def _watch(state_ref: weakref.ReferenceType[LoopState]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        state = state_ref()
        if state is not None and not state.discarded:
            taken = registry.take_all(state, closing=True)
            await release_gracefully(state, taken)
            state.asyncgen_hook = None
            finish_closing(asyncio.get_running_loop(), state)


def _close_asyncgen_hook(state: LoopState) -> None:
    # Finish the watcher now, synchronously (the state is discarded first, so its finally
    # does nothing); otherwise the loop's finalizer would schedule aclose() on a loop that may
    # never run again, and Python would report a coroutine that was never awaited.
    watcher, state.asyncgen_hook = state.asyncgen_hook, None
    if watcher is None:
        return
    step = watcher.aclose()
    try:
        step.send(None)
    except (StopIteration, RuntimeError):
        pass
