"""Version shims. Standard library only, imported by everything else."""

from __future__ import annotations

import sys
from asyncio import _get_running_loop as get_running_loop_or_none
from inspect import iscoroutinefunction

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup
else:  # pragma: no cover - exercised by the 3.10 nox session only
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = [
    "BaseExceptionGroup",
    "ExceptionGroup",
    "get_running_loop_or_none",
    "iscoroutinefunction",
]
