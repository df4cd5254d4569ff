"""What the httpx template and the SDK templates share: the forced close of an ``AsyncClient``.

Both ``httpx`` and ``httpx2`` (the fork that openai 3.x and anthropic 2.x are built on) keep
the same shape inside: ``AsyncClient._transport``/``_mounts``/``_state``,
``AsyncHTTPTransport._pool``, and an httpcore (or httpcore2) ``AsyncConnectionPool`` whose
``_connections`` reach, through ``_connection``/``_network_stream``, an ``AnyIOStream`` over
anyio's socket stream and its asyncio transport. :func:`close_async_client_now` walks that shape
without importing either library, so one function serves both.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from resourceloop.contrib._asyncio import force_close

__all__ = ["close_async_client_now", "remember_loop"]

# The loop each template-made client was created on, weakly (a client that holds no
# connection must not keep its loop alive). uvloop's transports do not name their loop.
_loops: weakref.WeakKeyDictionary[Any, weakref.ref[asyncio.AbstractEventLoop]] = (
    weakref.WeakKeyDictionary()
)


def remember_loop(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Remember ``client``'s loop for :func:`close_async_client_now` (a client with no
    connection names none)."""
    _loops[client] = weakref.ref(loop)


def _asyncio_transport(connection: Any) -> Any:
    """The asyncio transport under one httpcore connection, or ``None`` (not connected)."""
    stream: Any = None
    for _ in range(4):  # AsyncHTTPConnection -> (proxy tunnel ->) HTTP/1.1 or HTTP/2
        if connection is None:
            return None
        stream = getattr(connection, "_network_stream", None)
        if stream is not None:
            break
        connection = getattr(connection, "_connection", None)
    stream = getattr(stream, "_stream", None)  # httpcore's AnyIOStream -> an anyio stream
    while hasattr(stream, "transport_stream"):  # anyio TLSStream over the socket stream
        stream = stream.transport_stream
    return getattr(stream, "_transport", None)


def close_async_client_now(client: Any) -> None:
    """Abort every connection of an ``httpx``/``httpx2`` ``AsyncClient`` and mark it closed.

    The body of :func:`resourceloop.contrib.httpx.close_client_now` (whose docstring lists the
    internals touched), for either library. Safe to call from any thread, twice.
    """
    pools: list[Any] = []
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_connections"):
            pools.append(pool)
    connections = [conn for pool in pools for conn in list(pool._connections)]
    transports = [t for t in map(_asyncio_transport, connections) if t is not None]

    loop = None
    for transport in transports:
        loop = getattr(transport, "_loop", None)
        if loop is not None:
            break
    if loop is None:
        remembered = _loops.get(client)
        loop = remembered() if remembered is not None else None

    def mark_closed() -> None:
        for pool in pools:
            pool._connections = []
        client._state = type(client._state).CLOSED  # httpx's (or httpx2's) ClientState

    steps: list[Callable[[], object]] = [transport.abort for transport in transports]
    steps.append(mark_closed)
    force_close(loop, transports, steps)
