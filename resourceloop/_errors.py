"""Exception classes. Standard library only."""

from __future__ import annotations

__all__ = ["LoopClosedError"]


class LoopClosedError(RuntimeError):
    """The event loop is closed, or closing, so it cannot hold a resource.

    A :class:`RuntimeError` subclass, so code that already catches asyncio's own
    ``RuntimeError("Event loop is closed")`` keeps working.

    .. versionadded:: 0.1.0
    """
