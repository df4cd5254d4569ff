"""Locks an interrupt cannot leave held.

A signal handler that raises (Ctrl-C's ``KeyboardInterrupt``, a program's ``SIGALRM`` timeout)
runs in the main thread between two of its bytecodes. CPython 3.14 compiles ``with lock:`` as a
call of ``lock.__enter__`` whose end runs pending signal handlers *before* the statement's
cleanup is armed: an exception raised there leaves the lock held for ever, and every later
``with`` on it, on any thread, blocks for ever (CPython gh-148874, fixed in 3.15). For
resourceloop that is the registry lock: the reaper, the next loop's close and the exit hook
would all hang after one unlucky Ctrl-C.

``new_lock()`` is ``threading.Lock()`` where ``with`` arms its cleanup before any handler can
run, so the common path pays nothing. On 3.14 it is an ``InterruptSafeLock``: its
``__enter__`` is Python code, and a Python function returns to its caller without running
handlers, so the only window left is inside ``__enter__``, where the lock releases itself if
the handler raised after it was acquired. It is an ``RLock``, which knows how many times this
thread holds it: an interrupted acquisition is told from a completed one exactly.
"""

from __future__ import annotations

import _thread
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, cast

from ._compat import WITH_CAN_SKIP_EXIT

__all__ = ["InterruptSafeLock", "LockLike", "new_lock", "new_rlock"]


class LockLike(Protocol):
    """What resourceloop uses of a lock: ``threading.Lock``'s interface."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def locked(self) -> bool: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class InterruptSafeLock(_thread.RLock):  # type: ignore[misc]  # a C type, subclassable
    """A lock whose ``with`` leaves it released whatever instant an exception lands.

    Only ``__enter__`` is Python code. ``__exit__`` must stay the C one it inherits: a Python
    ``__exit__`` runs pending handlers when it starts, before its release, which is the same
    leak one step later. Reentrant, as the ``RLock`` under it is: ``new_lock()`` callers never
    re-enter (that would deadlock a ``threading.Lock`` on every other version), ``new_rlock()``
    callers may.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the C method, typeshed does not list it

        def _recursion_count(self) -> int: ...

    def __enter__(self) -> bool:  # type: ignore[override]  # RLock's takes acquire's arguments
        held = self._recursion_count()
        try:
            return bool(self.acquire())
        except BaseException:  # a signal handler raised: before or after the acquisition
            if self._recursion_count() > held:
                self.release()
            raise


def new_lock() -> LockLike:
    """A lock for ``with``: ``threading.Lock()``, or an ``InterruptSafeLock`` where needed."""
    if WITH_CAN_SKIP_EXIT:
        return cast(LockLike, InterruptSafeLock())  # locked(): RLock has it from 3.14
    return threading.Lock()


def new_rlock() -> LockLike:
    """A reentrant lock for ``with``: ``threading.RLock()``, or an ``InterruptSafeLock``."""
    if WITH_CAN_SKIP_EXIT:
        return cast(LockLike, InterruptSafeLock())
    return cast(LockLike, threading.RLock())  # locked() is never called on this one
