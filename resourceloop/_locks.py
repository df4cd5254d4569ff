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
the handler raised after it was acquired. It is built on an ``RLock``, which knows how many
times this thread holds it: an interrupted acquisition is told from a completed one exactly.
"""

from __future__ import annotations

import _thread
import threading
from types import TracebackType
from typing import Protocol

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


class InterruptSafeLock:
    """A lock whose ``with`` leaves it released whatever instant an exception lands.

    Reentrant, as the ``RLock`` under it is: ``new_lock()`` callers never re-enter (that
    would deadlock a ``threading.Lock`` on every other version), ``new_rlock()`` callers may.
    """

    __slots__ = ("_held_here", "acquire", "locked", "release")

    def __init__(self) -> None:
        lock = _thread.RLock()
        self.acquire = lock.acquire
        self.release = lock.release
        self.locked = lock.locked  # type: ignore[attr-defined]  # RLock.locked: 3.14+
        self._held_here = lock._recursion_count  # type: ignore[attr-defined]

    def __enter__(self) -> bool:
        held = self._held_here()
        try:
            return self.acquire()
        except BaseException:  # a signal handler raised: before or after the acquisition
            if self._held_here() > held:
                self.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<InterruptSafeLock {'locked' if self.locked() else 'unlocked'}>"


def new_lock() -> LockLike:
    """A lock for ``with``: ``threading.Lock()``, or an ``InterruptSafeLock`` where needed."""
    return InterruptSafeLock() if WITH_CAN_SKIP_EXIT else threading.Lock()


def new_rlock() -> LockLike:
    """A reentrant lock for ``with``: ``threading.RLock()``, or an ``InterruptSafeLock``."""
    if WITH_CAN_SKIP_EXIT:
        return InterruptSafeLock()
    return threading.RLock()  # type: ignore[return-value]  # RLock has no locked() before 3.14
