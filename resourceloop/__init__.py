"""resourceloop: one copy of each async resource per event loop, always released.

Layout: ``resources`` is the public face (templates, the manager and their live views), built on
a small private core: ``_registry`` holds the only shared state, ``_release`` frees resources
on their loop or without it, ``_closehook`` and ``_reaper`` notice loops that end, and
``_runtime`` ties them together with settings, stats, fork and exit handling. This file only
gathers the public names.
"""

from __future__ import annotations

from ._config import Config as Config
from ._errors import AcquisitionCycleError as AcquisitionCycleError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import LoopClosedError as LoopClosedError
from ._runtime import LiveResource as LiveResource
from ._runtime import Stats as Stats
from ._runtime import configure as configure
from ._runtime import live_resources as live_resources
from ._runtime import reap as reap
from ._runtime import stats as stats
from .resources import ResourceManager as ResourceManager
from .resources import ResourceTemplate as ResourceTemplate
from .resources import resource_managed_loops as resource_managed_loops
from .resources import resource_manager as resource_manager
from .resources import resource_templates as resource_templates

__version__ = "0.1.0"

__all__ = (
    "AcquisitionCycleError",
    "Config",
    "ConfigurationError",
    "LiveResource",
    "LoopClosedError",
    "ResourceManager",
    "ResourceTemplate",
    "Stats",
    "__version__",
    "configure",
    "live_resources",
    "reap",
    "resource_managed_loops",
    "resource_manager",
    "resource_templates",
    "stats",
)


def _fixup_module_metadata(module_name: str, namespace: dict[str, object]) -> None:
    """Make every public object say it lives in ``module_name`` (trio's ``fixup_module_metadata``).

    Tracebacks, pickles, ``repr()`` of classes and the reference then show ``resourceloop.X``
    rather than the private module that defines it. Classes are walked once, so their methods
    and nested classes follow; objects from outside the package are left alone.
    """
    import types

    seen: set[int] = set()

    def fix(obj: object) -> None:
        # Only classes and functions: an instance (``resource_templates``) reports its class's.
        if id(obj) in seen or not isinstance(obj, (type, types.FunctionType)):
            return
        seen.add(id(obj))
        if not obj.__module__.startswith("resourceloop._"):
            return
        obj.__module__ = module_name
        if isinstance(obj, type):
            for attr in vars(obj).values():
                fix(getattr(attr, "__func__", attr))

    for name in __all__:
        fix(namespace[name])


_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
