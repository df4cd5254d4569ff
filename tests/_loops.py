"""Event loops for the tests: the default loop and uvloop side by side, and a portable run()."""

from __future__ import annotations

import asyncio
import threading
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
    "abandon",
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


def abandon(
    template: Any, factory: LoopFactory = asyncio.new_event_loop
) -> tuple[asyncio.AbstractEventLoop, Any]:
    """Acquire ``template`` on a new loop in a thread that then ends without closing the loop.

    Returns the loop and the resource: the "abandoned loop" the reaper looks for.
    """
    out: list[tuple[asyncio.AbstractEventLoop, Any]] = []

    def owner() -> None:
        loop = factory()
        out.append((loop, loop.run_until_complete(template.acquire())))

    thread = threading.Thread(target=owner)
    thread.start()
    thread.join()
    [(loop, resource)] = out
    return loop, resource
