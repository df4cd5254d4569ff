"""Event loops for the tests: the default loop and uvloop side by side, and a portable run()."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop does not exist on Windows
    uvloop = None  # type: ignore[assignment]

__all__ = [
    "HAS_UVLOOP",
    "LOOP_FACTORIES",
    "LoopFactory",
    "is_uvloop",
    "needs_uvloop",
    "new_uvloop",
    "run",
    "uvloop",
]

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

HAS_UVLOOP = uvloop is not None
needs_uvloop = pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")


def new_uvloop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return uvloop is not None and isinstance(loop, uvloop.Loop)


#: Parametrize a test over both loop implementations.
LOOP_FACTORIES = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(new_uvloop, id="uvloop", marks=needs_uvloop),
]


def run(main: Callable[[], Coroutine[Any, Any, T]], factory: LoopFactory | None = None) -> T:
    """Run ``main()`` on a fresh loop made by ``factory``, then close it as asyncio.run does.

    Works the same on every Python (no ``asyncio.Runner`` before 3.11, no ``loop_factory``
    for ``asyncio.run`` before 3.12).
    """
    loop = (factory or asyncio.new_event_loop)()
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
