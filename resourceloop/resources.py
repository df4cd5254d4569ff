"""The seed's face: ``ResourceTemplate``, ``ResourceManager`` and their live views.

The names and their behaviour follow the "Resources" page of Pyot (``pyot.core.resources``);
the work happens in private modules: ``_template``, ``_manager``, ``_views``.

Where this differs from Pyot's ``pyot.core.resources``:
    * The first acquisition on a loop never hops through a thread pool and takes no
      process-wide lock across an ``await``; creations on different loops never contend.
    * ``purge()`` cannot deadlock: Pyot's purge runs inside its acquisition lock and deadlocks
      on the 32nd acquisition once a closed loop exists.
    * ``acquire()`` returns the resource, as Pyot's implementation does (its page says ``Self``).
    * Releasing a loop that holds nothing is a no-op, never an error.
    * No code change is needed for cleanup: a loop's resources are released just before it
      closes, and by a reaper when it cannot be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence, Set
from typing import Any

from ._manager import ResourceManager, resource_manager
from ._template import ResourceTemplate
from ._views import ManagedLoops, Templates

__all__ = [
    "ResourceManager",
    "ResourceTemplate",
    "resource_managed_loops",
    "resource_manager",
    "resource_templates",
]

resource_managed_loops: Set[asyncio.AbstractEventLoop] = ManagedLoops()
"""Live set of the event loops with an active ``ResourceManager``."""

resource_templates: Sequence[ResourceTemplate[Any]] = Templates()
"""Live list of the ``ResourceTemplate`` objects alive in this process, oldest first."""
