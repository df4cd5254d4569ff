"""Exception classes. Standard library only."""

from __future__ import annotations

__all__ = [
    "AcquisitionCycleError",
    "ConfigurationError",
    "LoopClosedError",
    "PortalCallError",
    "PortalClosedError",
]


class LoopClosedError(RuntimeError):
    """The event loop is closed, or closing, so it cannot hold a resource.

    Raised by ``ResourceTemplate.acquire()`` for a loop that is closed, or whose resources are
    being released because it is closing (the message names the template), by a cross-thread
    acquisition whose target loop closed before it ran, and by ``ResourceManager`` entered on a
    closing loop. Acquire on the running loop, from the code that uses the resource.

    A :class:`RuntimeError` subclass, so code that already catches asyncio's own
    ``RuntimeError("Event loop is closed")`` keeps working.

    .. versionadded:: 0.1.0
    """


class AcquisitionCycleError(RuntimeError):
    """A template's ``acquire_func`` needs, directly or through others, its own resource.

    Raised by ``ResourceTemplate.acquire()`` inside the creation that closes the cycle, so
    every waiter of the first creation gets it instead of waiting forever. The message names
    the templates in order (``'a' -> 'b' -> 'a'``). Break the cycle: create the shared part
    in one template and acquire it from the others.

    .. versionadded:: 0.1.0
    """


class ConfigurationError(ValueError):
    """A ``RESOURCELOOP_*`` environment variable holds a value resourceloop cannot use.

    The environment is read once, on first use, never at import: the first
    ``ResourceTemplate.acquire()``, the first ``ResourceManager`` entered, or the first
    ``configure()`` call, whichever comes first, raises it (and every later one, until the
    variable is fixed: nothing is stored meanwhile). The message names the variable, its value
    and what is accepted; the traceback ends at that call in your code, with no frames of
    resourceloop's parsing behind it. Fix or unset the variable.

    A :class:`ValueError` subclass, so code that catches ``ValueError`` keeps working.

    .. versionadded:: 0.1.0
    """


class PortalClosedError(RuntimeError):
    """The portal is closed (or closing, or was inherited through ``os.fork()``).

    Raised by :meth:`Portal.call` and :meth:`Portal.start` once :meth:`Portal.close` began, and
    by calls that were still running when the portal closed (they were cancelled first). A
    portal is not restarted: create a new :class:`Portal`, or use :func:`portal` (and
    ``async_to_sync(portal=True)``), which replaces a closed default portal with a fresh one.

    .. versionadded:: 0.1.0
    """


class PortalCallError(RuntimeError):
    """A blocking portal call was made where it would block an event loop, or deadlock.

    Raised by :meth:`Portal.call` (and functions wrapped with a portal) from a thread whose
    event loop is running, which includes the portal's own loop. From async code, ``await``
    the coroutine function directly; from a loop that must hand the work to the portal, run the
    blocking call in a worker thread: ``await asyncio.to_thread(portal.call, func, ...)``.

    .. versionadded:: 0.1.0
    """
