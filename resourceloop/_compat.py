"""Version shims. Standard library only, imported by everything else."""

from __future__ import annotations

import signal
import sys
from asyncio import _get_running_loop as get_running_loop_or_none
from inspect import iscoroutinefunction

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup
else:  # pragma: no cover - exercised by the 3.10 nox session only
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = [
    "WITH_CAN_SKIP_EXIT",
    "BaseExceptionGroup",
    "ExceptionGroup",
    "block_signals_in_this_thread",
    "get_running_loop_or_none",
    "iscoroutinefunction",
]

#: Whether a signal handler that raises right after ``with lock:`` acquired the lock can skip
#: its ``__exit__`` (CPython gh-148874: 3.14 runs handlers at the end of the ``__enter__``
#: call, before the statement's cleanup is armed; fixed in 3.15). ``_locks`` works around it.
WITH_CAN_SKIP_EXIT = sys.version_info[:2] == (3, 14)

#: Process-directed signals a Python program handles: the main thread's to receive.
_MAIN_THREAD_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


def block_signals_in_this_thread() -> None:
    """Keep Ctrl-C and its kin away from one of our own threads (the reaper, the portal).

    The kernel hands a process-directed signal to any thread that does not block it, and
    Python runs the handler only in the main thread, once that thread runs Python code again:
    a main thread asleep in ``Lock.acquire()`` or ``Event.wait()`` wakes at once only when the
    signal interrupted *its* wait. Blocked here, the signal goes to the main thread (or a user
    thread). Threads started from this one inherit the mask. POSIX only; a no-op elsewhere.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
