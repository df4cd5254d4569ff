"""Exception classes. Standard library only."""

from __future__ import annotations

__all__ = ["LoopClosedError"]


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
