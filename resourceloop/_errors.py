"""Exception classes. Standard library only."""

from __future__ import annotations

__all__ = ["AcquisitionCycleError", "LoopClosedError"]


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

    .. versionadded:: 0.2.0
    """
