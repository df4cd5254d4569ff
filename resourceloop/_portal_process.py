"""The process-wide side of portals: the default portal, interpreter exit and ``os.fork()``.

A portal's thread and loop belong to one process, but two events concern every portal at
once. At interpreter exit, each running portal is closed so that its resources are released
gracefully; after ``os.fork()``, the child must never touch the parent's portals (their thread
does not exist there) and gets a fresh default portal. Both need the set of portals started in
this process, and the fork handler resets the default portal along with it, so that state,
its lock and both handlers live here, apart from the ``Portal`` class (``_portal``), which
reports each start through :func:`install_process_hooks`.

Pool children end without ``atexit``: a ``multiprocessing`` (or billiard) child runs its
``Process`` and then ``os._exit``, after running ``multiprocessing.util`` finalizers only. So
every fork child that multiprocessing bootstraps registers a ``Finalize`` that does what
interpreter exit does (:func:`release_process`: close this process's portals, then the
runtime's exit pass). It cannot be registered by the fork handler itself, since
``Process._bootstrap`` clears the finalizer registry after the fork: the fork handler registers
an after-fork callback (``multiprocessing.util.register_after_fork``), which bootstrap runs
after that clearing, and the callback registers the finalizer. billiard's pool workers
(Celery's prefork) call ``os._exit`` without running finalizers at all: there
``resourceloop.contrib.celery`` calls :func:`release_process` from ``worker_process_shutdown``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from ._errors import PortalClosedError
from ._locks import new_lock

#: ``_portal.Portal``, which imports this module: never imported from here (no import cycle,
#: ``TYPE_CHECKING`` edges included); its instances reach this module as arguments.
Portal = Any


__all__ = ["default_portal", "install_process_hooks", "release_process", "remember"]

logger = logging.getLogger("resourceloop")

P = TypeVar("P")


class _Portals:
    """This process's portals and their process-wide state, on one owner.

    The fork handler replaces the whole object (fresh locks first), rather than resetting
    fields one by one.
    """

    __slots__ = (
        "default",
        "exit_hook_installed",
        "exiting",
        "finalizer_pid",
        "forgotten",
        "lock",
        "made",
        "made_lock",
        "started",
    )

    def __init__(self, made: list[Portal] | None = None, forgotten: list[object] | None = None):
        #: Guards ``default``, ``exiting``, ``exit_hook_installed`` and ``started``.
        self.lock = new_lock()
        self.default: Any = None
        self.exiting = False
        self.exit_hook_installed = False
        #: Portals started in this process, for exit and fork.
        self.started: weakref.WeakSet[Portal] = weakref.WeakSet()
        #: Every portal made in this process, started or not, so that a fork child can give
        #: each a fresh lock; under ``made_lock`` (its own: ``default_portal()`` makes one
        #: under ``lock``).
        self.made_lock = new_lock()
        self.made: weakref.WeakSet[Portal] = weakref.WeakSet(made or ())
        #: Portals a fork child inherited from its parent: referenced forever, never touched.
        self.forgotten: list[object] = forgotten if forgotten is not None else []
        #: The process whose pool finalizer is registered (``register_process_end``).
        self.finalizer_pid = 0


_process = _Portals()


def default_portal(new: Callable[..., P]) -> P:
    """The default portal, or a fresh ``new(...)`` in place of a closed (or inherited) one.

    Raises:
        PortalClosedError: The interpreter is exiting.
    """
    process = _process
    current = process.default
    if current is not None and current.usable:
        return cast(P, current)
    with process.lock:
        if process.exiting:
            raise PortalClosedError(
                "the interpreter is exiting: the default portal is closed and no new one starts"
            )
        current = process.default
        if current is None or current.closed:
            current = process.default = new(name="resourceloop-portal")
        return cast(P, current)


def remember(made: Portal) -> None:
    """Remember a new portal, so that a fork child replaces its lock."""
    process = _process
    with process.made_lock:
        process.made.add(made)


def install_process_hooks(started: Portal) -> None:
    """Remember ``started`` for exit and fork; register the exit handler once.

    Called after the portal's loop runs, so our exit handler is registered after the runtime's
    and runs before it (atexit runs handlers last-in, first-out): portals close while the
    reaper still runs.
    """
    process = _process
    with process.lock:
        process.started.add(started)
        exit_hook = not process.exit_hook_installed
        process.exit_hook_installed = True
    if exit_hook:
        atexit.register(_close_at_exit)
        # A pool child started otherwise than by a fork of a process that had imported us
        # (forkserver, or resourceloop imported in the child): it will end with os._exit too.
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.parent_process() is not None:
            register_process_end()


def _close_at_exit() -> None:
    """Close every portal of this process, releasing gracefully; never raise at exit."""
    process = _process
    with process.lock:
        process.exiting = True
        portals = list(process.started)
    for each in portals:
        try:
            each.close()
        except BaseException:  # pragma: no cover - a release that raised SystemExit at exit
            logger.exception("resourceloop could not close %r at exit", each)


def release_process() -> None:
    """Close every portal of this process, then run the runtime's exit pass; never raise.

    What interpreter exit does, for a process that will end without ``atexit``. Afterwards
    :func:`default_portal` refuses to make a new portal, as at exit.
    """
    _close_at_exit()
    from . import _runtime  # the runtime's exit pass; imported late, it is a layer below us

    try:
        _runtime._at_exit()
    except Exception:  # pragma: no cover - _at_exit logs its own failures
        logger.debug("the runtime's exit pass failed", exc_info=True)


#: The multiprocessing-like ``util`` modules whose children run finalizers and after-fork
#: callbacks: the standard one, and billiard's (the same objects since billiard 4).
_POOL_UTILS: Final = ("multiprocessing.util", "billiard.util")


class _AfterForkKey:
    """Keeps our after-fork callback registered: ``register_after_fork`` holds it weakly."""

    __slots__ = ("__weakref__",)


_after_fork_key = _AfterForkKey()


def _pool_utils() -> list[object]:
    found: list[object] = []
    for name in _POOL_UTILS:
        util = sys.modules.get(name)  # imported already if this process can be a pool child
        if util is not None and all(util.Finalize is not u.Finalize for u in found):  # type: ignore[attr-defined]
            found.append(util)
    return found


def register_process_end() -> None:
    """Register :func:`release_process` as a ``Finalize`` of this process, once per process.

    Only needed (and only done) where a ``multiprocessing``-like module is loaded: its children
    run finalizers where they skip ``atexit``; in a process that ends normally, ``atexit``
    runs them too, and :func:`release_process` is idempotent.
    """
    process = _process
    pid = os.getpid()
    if process.finalizer_pid == pid:
        return
    process.finalizer_pid = pid
    for util in _pool_utils():
        # exitpriority >= 0: run in the first round, before the child's own children are joined
        util.Finalize(None, release_process, exitpriority=10)  # type: ignore[attr-defined]


def _in_bootstrapped_child(_key: object) -> None:
    register_process_end()


def _after_fork_in_child() -> None:
    """The child never touches the parent's portals; cheap, as fork hooks must be.

    Locks first: another thread of the parent may have held any of them at fork time, and
    that thread does not exist here to release it. The new ``_Portals`` comes with fresh
    ones, and each portal replaces its own. Nothing here takes a lock: iterating a ``WeakSet``
    takes none, and no other thread runs in the child yet.
    """
    global _process
    parent = _process
    made = list(parent.made)
    parent.forgotten.append(list(parent.started))  # their loops stay alive, never closed here
    still_usable = [each for each in made if each.forget_after_fork()]
    _process = _Portals(made=still_usable, forgotten=parent.forgotten)
    # A multiprocessing or billiard child: its bootstrap clears the finalizers after the fork,
    # then runs the after-fork callbacks; ours registers the finalizer there. billiard's
    # Process imports its util (multiprocessing's since billiard 4) only in the child, so it
    # is imported here when billiard is loaded (os.fork() holds the import lock over the
    # fork, so the child's import cannot wait for a parent thread); multiprocessing's own
    # fork start method imports it in the parent. Any other fork (a subprocess spawned by
    # uvloop, say) pays two dict lookups.
    utils = _pool_utils()
    if not utils and "billiard" in sys.modules:
        import multiprocessing.util  # noqa: F401  (found through sys.modules)

        utils = _pool_utils()
    for util in utils:
        util.register_after_fork(_after_fork_key, _in_bootstrapped_child)  # type: ignore[attr-defined]
    # The child's first portal registers the exit handler again, after whatever the child
    # registered meanwhile, so that it runs first, as in the parent (the new ``_Portals``
    # says it is not installed).
    atexit.unregister(_close_at_exit)


# Registered at import, not at the first start: a fork may come while another thread makes
# the first portal (and holds its lock), and the child must not inherit that lock.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
