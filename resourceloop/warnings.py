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
    "BlockingReleaseWarning",
    "ForcedReleaseWarning",
    "ReleaseTimeoutWarning",
    "ResourceLoopWarning",
    "UnclosedLoopWarning",
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


class BlockingReleaseWarning(ResourceLoopWarning):
    """A release function blocked its thread for longer than ``release_timeout``.

    ``release_timeout`` bounds the time a release may *await*: a release that overruns it is
    cancelled, and closed if it ignores the cancellation. Synchronous code (``time.sleep``, a
    blocking ``close()``) cannot be interrupted at all; it holds the loop's thread, and so the
    loop's close, for as long as it runs. resourceloop cannot shorten that, but it reports it,
    with the template's name and how long the call blocked.

    What to do: make the release asynchronous, moving the blocking part to a thread
    (``await asyncio.to_thread(...)``), or make it return sooner.

    .. versionadded:: 0.1.0
    """


class UnclosedLoopWarning(ResourceLoopWarning):
    """Event loops were left unclosed and garbage-collected while holding resources.

    Typical of worker threads that create a loop per task and never close it
    (``loop = asyncio.new_event_loop(); loop.run_until_complete(...)``). resourceloop does not
    keep such loops alive: once nothing else refers to one, the reaper releases its resources
    on it, gracefully where it can still run, and closes it. Emitted once per thread.

    What to do: close each loop when done with it (``asyncio.run()``, ``asyncio.Runner``,
    ``loop.close()``), or keep one loop per worker thread.

    .. versionadded:: 0.1.0
    """
