"""Warning classes that users filter on.

Every class derives from :class:`ResourceLoopWarning`, itself a :class:`ResourceWarning`, so
``-W error::ResourceWarning`` and pytest's ``filterwarnings = ["error"]`` catch them all, and
``warnings.filterwarnings("ignore", category=resourceloop.warnings.ForcedReleaseWarning)``
silences exactly one kind.

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

    .. versionadded:: 0.1.0
    """


class UngracefulLoopWarning(ResourceLoopWarning):
    """A loop holds resources that nothing will release gracefully.

    Emitted once per loop, at its first acquisition outside a ``ResourceManager``, when no
    close hook could be installed on the loop or the hook is disabled
    (``configure(close_hook=False)``). The reaper will still release the resources, but
    forcefully, once the loop is closed, abandoned or collected.

    .. versionadded:: 0.1.0
    """


class ForcedReleaseWarning(ResourceLoopWarning):
    """A resource was released without running its release function on its loop.

    Emitted per resource when its loop was already closed, collected or could not run again.

    .. versionadded:: 0.1.0
    """


class ReleaseTimeoutWarning(ResourceLoopWarning):
    """A release function ran longer than ``release_timeout`` and was abandoned.

    The resource is then released forcefully (its ``force_release_func``, if any, is called).

    .. versionadded:: 0.1.0
    """
