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

Guarantees
    * The wrapper never releases when the loop is running (``close`` will raise) or already
      closed (``close`` is a no-op), and never wraps a loop twice.
    * The real ``close`` always runs, whatever happens in the releases; a ``BaseException``
      (Ctrl-C during a slow release) propagates only after every resource taken is settled
      (``_release``) and the loop is really closed.
    * A ``stop()`` scheduled before ``close()`` does not cut the releases short.
    * If the reaper is running this loop to release it (its thread ended), ``close`` waits
      for that, bounded, instead of failing with "Cannot close a running event loop".
    * If ``asyncio.run``'s shutdown pass was cut short (Ctrl-C), ``close`` stops it and forces
      what it had not released, at once (``_lifecycle.take_over``).

What each trigger does once it fires is ``_lifecycle``'s: this module only decides when.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import types
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final

from . import _config
from ._compat import get_running_loop_or_none
from ._lifecycle import end_loop, end_on_loop, take_over, wait_for_guard
from ._registry import registry
from ._state import ENDING, GONE, LoopState

__all__ = [
    "install_asyncgen_hook",
    "install_close_hook",
    "install_shutdown_hook",
    "is_close_hook",
]

logger = logging.getLogger("resourceloop")


def install_close_hook(loop: asyncio.AbstractEventLoop) -> bool:
    """Wrap ``loop.close`` on the instance; False if this loop cannot be wrapped.

    The wrappers refer to the loop by a plain weak reference, never by its state's (whose
    callback would then run at every loop's death; see ``_registry``).
    """
    try:
        chained = _on_instance(loop, "close", _close)
    except AttributeError:  # pragma: no cover - every loop has a close method
        return False
    if chained is _OURS:
        return True
    close = _partial(_close, _weak(loop), chained)
    try:
        loop.close = close  # type: ignore[method-assign]
    except (AttributeError, TypeError):  # no instance __dict__
        return False
    return loop.close is close


#: What ``_on_instance`` returns when our wrapper is there already.
_OURS: Final[Any] = object()
#: The types of a method bound to the loop: a class's own, not set on the instance.
_BOUND: Final = (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)
_partial: Final = functools.partial
_weak: Final = weakref.ref


def _on_instance(loop: object, name: str, ours: Callable[..., Any]) -> Any:
    """What a wrapper of ``loop.<name>`` must chain to; ``_OURS`` if it is wrapped already.

    The class's method comes bound to the loop: ``None``, a wrapper calls it unbound. Anything
    else was set on the instance (ours, or another library's wrapper, which stays in the
    chain). Our wrappers are partials of ``ours``: a few reads of C attributes tell them, and
    none can raise. Read as any attribute (a loop class's ``__getattribute__`` may run: this
    is outside the registry lock), never through ``vars(loop)``, which would slow the loop
    down (see ``_state``).
    """
    existing = getattr(loop, name)
    kind = type(existing)
    if kind in _BOUND and existing.__self__ is loop:
        return None
    if kind is _partial and existing.func is ours:
        return _OURS
    return existing


def _close(
    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop],
    chained: Callable[[], None] | None,
) -> None:
    """Release this loop's resourceloop resources, then close it.

    ``loop.close`` is a ``functools.partial`` of this function with the loop's weak reference
    and the wrapper it replaced (``None`` for the class's method, called unbound): no closure
    per loop.
    """
    loop = loop_ref()
    if loop is None:
        # ``BaseEventLoop.__del__`` calls ``self.close()`` on a collected, unclosed loop.
        # Up to 3.14 the cyclic collector clears weak references before it runs
        # finalizers, so ours is dead by then; find the loop as that caller's ``self``
        # (checked by identity: its ``close`` is our partial of this very reference) so that
        # it is still closed. From 3.15 it clears references without a callback only
        # afterwards: ours is alive and ``loop`` is set already; either way ``registry.get``
        # finds nothing (the registry's weak key, which has a callback, is cleared first), so
        # nothing is released from inside a finalizer: the reaper forces what such a loop
        # held. tests/test_pythons.py checks both. (The partial is C: the frame above this
        # one is its caller's.)
        try:
            caller = sys._getframe(1).f_locals.get("self")
        except ValueError:  # pragma: no cover - called with no Python frame above
            caller = None
        wrapper = getattr(caller, "__dict__", {}).get("close")
        if type(wrapper) is _partial and wrapper.func is _close and wrapper.args[0] is loop_ref:
            loop = caller
    try:
        if loop is not None:
            _before_close(loop)
    finally:
        # The real close, even when a BaseException is on its way out.
        if chained is not None:
            chained()  # someone else's wrapper, installed before ours: keep the chain
        elif loop is not None:
            type(loop).close(loop)


def is_close_hook(func: object) -> bool:
    """True if ``func`` is a close wrapper of ours."""
    return type(func) is _partial and func.func is _close


def install_shutdown_hook(loop: asyncio.AbstractEventLoop) -> None:
    """Release in the executor shutdown that comes just before ``close``, when it does.

    ``asyncio.run``, ``asyncio.Runner`` and ``uvloop.run`` end with
    ``loop.run_until_complete(loop.shutdown_default_executor())`` and then ``loop.close()``.
    Called while its loop is not running, the method is being called by whoever is about to
    close the loop (after it, the loop refuses new executor work anyway), so the wrapper set
    here releases the loop's resources first, in that same pass and task: the close hook then
    has nothing left and runs no pass of its own (one task and two loop iterations fewer, about
    a tenth of a short loop's whole life; see ``benchmarks``). The releases also still find
    the default executor working. Called from a running loop, mid-life, the method only does
    what it always does. The close hook stays the guarantee for every other way of closing.

    Not where one more attribute would cost the loop its inline attributes (``_SHUTDOWN_FITS``).
    """
    if not _SHUTDOWN_FITS:
        return
    try:
        chained = _on_instance(loop, _SHUTDOWN, _shutdown)
    except AttributeError:  # not an asyncio loop after all: the close hook does it all
        return
    if chained is _OURS:
        return
    try:
        loop.shutdown_default_executor = _partial(  # type: ignore[method-assign,assignment]
            _shutdown, _weak(loop), chained
        )
    except (AttributeError, TypeError):  # pragma: no cover - its close could be wrapped
        pass


_SHUTDOWN: Final = "shutdown_default_executor"

#: An instance whose attributes number this many loses its inline values (CPython keeps 30
#: names in a class's shared keys, measured with callgrind on 3.13-3.15): every ``self._x``
#: in asyncio's own methods then costs more, for the rest of the loop's life (a callback-only
#: loop: +14% instructions on 3.13, +14% on 3.14, +17% on 3.15).
_INLINE_NAMES: Final = 30
#: asyncio's loop has 24 names on 3.11 and 3.12, 26 on 3.13 and 27 on 3.14 and 3.15; with ours
#: (``READY_ATTR`` and ``close``) a 3.14 loop has 29, so the shutdown wrapper, which only
#: saves one pass at the end, is left out there. The names are not counted on each loop:
#: asking a loop for its ``__dict__`` (or even its referents) costs every later attribute read
#: on it (3.13, the hit: 1,982 instructions instead of 1,964).
_ASYNCIO_NAMES: Final = (
    24 if sys.version_info < (3, 13) else 26 if sys.version_info < (3, 14) else 27
)

#: Whether the shutdown wrapper keeps asyncio's loop below the limit (``READY_ATTR``, ``close``
#: and it are the 3 names).
_SHUTDOWN_FITS: Final = _ASYNCIO_NAMES + 3 < _INLINE_NAMES


def _shutdown(
    loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop],
    chained: Callable[..., Awaitable[None]] | None,
    *args: Any,
    **kwargs: Any,
) -> Awaitable[None]:
    """Release this loop's resourceloop resources if it is ending, then shut down.

    ``loop.shutdown_default_executor`` is a ``functools.partial`` of this function with the
    loop's weak reference and the wrapper it replaced (``None`` for the class's method).
    """
    loop = loop_ref()
    shut_down: Callable[[], Awaitable[None]]
    if chained is not None:
        shut_down = functools.partial(chained, *args, **kwargs)
    elif loop is not None:
        class_method = type(loop).shutdown_default_executor
        shut_down = functools.partial(class_method, loop, *args, **kwargs)
    else:  # pragma: no cover - called as the loop's method, so the loop is alive
        raise RuntimeError("shutdown_default_executor() of a collected event loop")
    state = registry.get(loop) if loop is not None else None
    if (
        state is not None
        and state.store
        and not loop.is_running()  # type: ignore[union-attr]
        and (_config._current or _config.current()).close_hook
    ):
        return _release_then_shut_down(state, shut_down)
    return shut_down()


async def _release_then_shut_down(
    state: LoopState, shut_down: Callable[[], Awaitable[None]]
) -> None:
    # On the loop, in the pass's task: the loop's end, then the executor's shutdown.
    # Acquisitions after this pass start a new state, which the close hook ends.
    await end_on_loop(state, why="its release was interrupted")
    await shut_down()


def _before_close(loop: asyncio.AbstractEventLoop) -> None:
    """End the loop's tracking, releasing what it holds on it, just before the real close."""
    state = registry.get(loop)
    if state is None:
        return
    if state.guard.locked():
        wait_for_guard(state)  # the reaper may be running it: wait rather than fail
    if loop.is_running() or loop.is_closed() or state.phase is GONE:
        return
    if not (_config._current or _config.current()).close_hook:
        return  # disabled: the reaper forces and warns
    why = "it could not run before closing"
    if state.phase is ENDING:
        take_over(loop, state, why="its release was interrupted")
        return
    end_loop(loop, state, why=why, run=True)


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
        if state is not None and state.phase is not GONE:
            state.asyncgen_hook = None  # this is it, finishing
            loop = get_running_loop_or_none()
            if loop is None or loop.is_closed():  # finalized by the collector, off its loop
                end_loop(None, state, why="its loop closed without running the hook", run=False)
            else:
                await end_on_loop(state, why="its release was interrupted")
