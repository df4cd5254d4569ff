"""Warning classes that users filter on.

Every class derives from :class:`ResourceLoopWarning`, itself a :class:`ResourceWarning`, so
a filter on ``ResourceWarning`` covers them all, and
``warnings.filterwarnings("ignore", category=resourceloop.warnings.ForcedReleaseWarning)``
silences exactly one kind. ``warnings.catch_warnings(record=True)`` and ``pytest.warns`` see
them. They are never raised as exceptions, though: they are often emitted from the reaper
thread or from inside a loop's ``close()``, so where a filter (``-W error``, pytest's
``filterwarnings = ["error"]``) would turn one into an exception, resourceloop logs the message
on the ``resourceloop`` logger at warning level instead. To make leaks fail tests, use the
pytest plugin's ``--resourceloop-leaks``.

resourceloop warns only when something is actually at risk: a loop whose resources cannot be
released gracefully, a resource that had to be released forcefully, a release that timed out.
Merely running in several threads is not a warning (it is reported by ``resourceloop.stats()``
and the debug log instead).
"""

from __future__ import annotations

__all__ = [
    "ForcedReleaseWarning",
    "ReleaseTimeoutWarning",
    "ResourceLoopWarning",
    "UngracefulLoopWarning",
]


class ResourceLoopWarning(ResourceWarning):
    """Base class of every warning resourceloop emits.

    Filter on it to treat all of them alike, for example
    ``warnings.simplefilter("ignore", ResourceLoopWarning)``. Warnings may be emitted from any
    thread, including the ``resourceloop-reaper`` thread; a filter that turns them into errors
    never breaks a release (the message is then logged on the ``resourceloop`` logger instead).

    .. versionadded:: 0.1.0
    """


class UngracefulLoopWarning(ResourceLoopWarning):
    """A loop holds resources that nothing will release gracefully.

    Emitted once per loop, at its first acquisition outside a ``ResourceManager``, when no
    close hook could be installed on the loop or the hook is disabled
    (``configure(close_hook=False)`` or ``RESOURCELOOP_CLOSE_HOOK=0``). The reaper still releases
    the resources: forcefully once the loop is closed or collected, gracefully if its thread
    ends and leaves it unclosed.

    What to do: leave the close hook on, or wrap the work in ``async with resource_manager():``
    (or ``@resource_manager.as_decorator``), which releases gracefully with or without a hook.

    .. versionadded:: 0.1.0
    """


class ForcedReleaseWarning(ResourceLoopWarning):
    """A resource was released without running its release function on its loop.

    Emitted per resource when its loop was already closed (without the close hook), was
    garbage-collected, or could not run its release in time. The template's
    ``force_release_func`` ran instead, or its ``release_func`` if that is synchronous; an
    ``async`` release function cannot run without its loop and was skipped.

    What to do: let loops end through ``asyncio.run``, ``asyncio.Runner`` or ``loop.close()``
    with the close hook on, or use a ``ResourceManager``; give templates whose resources hold
    sockets a ``force_release_func`` that can close them without the loop.

    .. versionadded:: 0.1.0
    """


class ReleaseTimeoutWarning(ResourceLoopWarning):
    """A release function ran longer than ``release_timeout`` and was abandoned.

    The release was cancelled so that the loop's close, the reaper or the exit could go on, and
    the resource was released forcefully (its ``force_release_func``, if any, is called).

    What to do: find what the release function waits for (an asyncpg ``Pool.close()`` waits for
    connections never returned to the pool); if it is legitimately slow, raise the bound with
    ``resourceloop.configure(release_timeout=...)`` or ``RESOURCELOOP_RELEASE_TIMEOUT``.

    .. versionadded:: 0.1.0
    """
