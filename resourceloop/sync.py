"""``async_to_sync`` and ``sync_to_async``: call async code from sync code and back.

The seed example's helpers, compatible with Pyot's ``pyot.utils.sync``, and a portal. The work
happens in private modules: ``_sync_calls`` (the two wrappers, and the fresh loop per call),
``_portal`` (the callers' side of a portal), ``_portal_loop`` (what runs on its thread) and
``_portal_process`` (the default portal, exit and fork).

Two ways to run async code from sync code:
    * **A fresh loop per call** (``@async_to_sync``, the default, as in Pyot): each call runs on
      a new event loop that is closed when the call returns (as ``asyncio.run`` does), so every
      resource the call acquired is released gracefully, on that loop, just before it closes:
      resourceloop's close hook does it, with or without a ``resource_manager``. Nothing is
      shared between calls, so nothing (no connection) is reused either.
    * **A portal** (``@async_to_sync(portal=True)``, or a :class:`Portal` of your own): one event
      loop running in a daemon thread, started on first use and shared by every sync caller in
      the process. Calls from many threads run concurrently on it, and the resources they
      acquire (an ``aiohttp.ClientSession`` and its connection pool) live across calls until
      the portal closes: on ``close()``, on leaving ``with Portal():``, or at interpreter exit.
      There they are released gracefully, on the portal's loop, exactly once.

Where this differs from Pyot's:
    * ``async_to_sync`` works from a thread that already runs an event loop: the call then runs
      on a fresh loop in a short-lived worker thread (Pyot's ``asyncio.run`` raises). The
      calling loop is blocked until it returns, as with any blocking call; from async code,
      ``await`` the coroutine function directly instead. (A portal call refuses, see below.)
    * ``sync_to_async`` refuses coroutine functions and non-callables with ``TypeError``, looks
      the loop up when called (not ``get_event_loop()``) and runs the function in the loop's
      default executor with the caller's ``contextvars``.
    * Both are typed with ``ParamSpec``: the wrapper keeps the wrapped function's parameters.

Managers inside portal calls: the portal enters a ``ResourceManager`` on its loop when it
starts and leaves it when it closes. A ``resource_manager()`` that a call enters (as the seed
example does) acquires as usual, but its exit releases nothing and it never raises because
another call's manager is active: the resources stay for the next call.
"""

from __future__ import annotations

from ._errors import PortalCallError, PortalClosedError
from ._portal import Portal, portal, release_at_process_end
from ._sync_calls import async_to_sync, sync_to_async

__all__ = [
    "Portal",
    "PortalCallError",
    "PortalClosedError",
    "async_to_sync",
    "portal",
    "release_at_process_end",
    "sync_to_async",
]

# Tracebacks, pickles and the reference show them where users import them from.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
