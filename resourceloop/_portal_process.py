"""The process-wide side of portals: the default portal, interpreter exit and ``os.fork()``.

A portal's thread and loop belong to one process, but two events concern every portal at
once. At interpreter exit, each running portal is closed so that its resources are released
gracefully; after ``os.fork()``, the child must never touch the parent's portals (their thread
does not exist there) and gets a fresh default portal. Both need the set of portals started in
this process, and the fork handler resets the default portal along with it, so that state,
its lock and both handlers live here, apart from the ``Portal`` class (``_portal``), which
reports each start through :func:`install_process_hooks`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

from ._errors import PortalClosedError

if TYPE_CHECKING:
    from ._portal import Portal

__all__ = ["default_portal", "install_process_hooks"]

logger = logging.getLogger("resourceloop")

_default: Portal | None = None
_default_lock = threading.Lock()
_exiting = False
_exit_hook_installed = False
#: Portals started in this process, for exit and fork; written under _default_lock.
_portals: weakref.WeakSet[Portal] = weakref.WeakSet()
#: Every portal made in this process, started or not, so that a fork child can give each a
#: fresh lock; written under _made_lock (its own: default_portal() makes one under
#: _default_lock).
_made: weakref.WeakSet[Portal] = weakref.WeakSet()
_made_lock = threading.Lock()
#: Portals a fork child inherited from its parent: referenced forever, never touched.
_forgotten: list[object] = []


def default_portal(new: type[Portal]) -> Portal:
    """The default portal, or a fresh ``new(...)`` in place of a closed (or inherited) one.

    Raises:
        PortalClosedError: The interpreter is exiting.
    """
    global _default
    current = _default
    if current is not None and current._state in ("new", "starting", "running"):
        return current
    with _default_lock:
        if _exiting:
            raise PortalClosedError(
                "the interpreter is exiting: the default portal is closed and no new one starts"
            )
        current = _default
        if current is None or current.closed:
            current = _default = new(name="resourceloop-portal")
        return current


def remember(made: Portal) -> None:
    """Remember a new portal, so that a fork child replaces its lock."""
    with _made_lock:
        _made.add(made)


def install_process_hooks(started: Portal) -> None:
    """Remember ``started`` for exit and fork; register the exit handler once.

    Called after the portal's loop runs, so our exit handler is registered after the runtime's
    and runs before it (atexit runs handlers last-in, first-out): portals close while the
    reaper still runs.
    """
    global _exit_hook_installed
    with _default_lock:
        _portals.add(started)
        exit_hook = not _exit_hook_installed
        _exit_hook_installed = True
    if exit_hook:
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    """Close every portal of this process, releasing gracefully; never raise at exit."""
    global _exiting
    with _default_lock:
        _exiting = True
        portals = list(_portals)
    for each in portals:
        try:
            each.close()
        except BaseException:  # pragma: no cover - a release that raised SystemExit at exit
            logger.exception("resourceloop could not close %r at exit", each)


def _after_fork_in_child() -> None:
    """The child never touches the parent's portals; cheap, as fork hooks must be.

    Locks first: another thread of the parent may have held any of them at fork time, and
    that thread does not exist here to release it. Nothing below takes a lock: iterating a
    ``WeakSet`` takes none, and no other thread runs in the child yet.
    """
    global _default, _default_lock, _portals, _made, _made_lock, _exit_hook_installed
    _default_lock = threading.Lock()
    _made_lock = threading.Lock()
    made = list(_made)
    for each in made:
        each._lock = threading.Lock()
    inherited = list(_portals)
    _forgotten.append(inherited)  # keep their loops alive: never collected, never closed here
    for each in made:
        # A started portal's thread does not exist here ("starting" included: its thread
        # was about to run); one never started stays usable in the child.
        if each._state != "new":
            each._state = "forked"
    _portals = weakref.WeakSet()
    _made = weakref.WeakSet(each for each in made if each._state == "new")
    _default = None
    # The child's first portal registers the exit handler again, after whatever the child
    # registered meanwhile, so that it runs first, as in the parent.
    atexit.unregister(_close_at_exit)
    _exit_hook_installed = False


# Registered at import, not at the first start: a fork may come while another thread makes
# the first portal (and holds _default_lock), and the child must not inherit that lock.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
