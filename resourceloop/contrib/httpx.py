"""A ``ResourceTemplate`` for ``httpx.AsyncClient``: one client per event loop.

::

    from resourceloop.contrib.httpx import async_client_template

    clients = async_client_template(timeout=10.0, headers={"User-Agent": "my-app/1.0"})


    async def get_json(url: str) -> object:
        client = await clients.acquire()  # this loop's client, created on first use
        response = await client.get(url)
        return response.raise_for_status().json()

An ``httpx.AsyncClient`` keeps a pool of connections (httpcore's) whose sockets belong to the
loop that opened them. Each loop gets its own client, closed gracefully with
``await client.aclose()`` on that loop, in one task (httpcore closes inside an anyio cancel
scope, which must be left in the task that entered it). When the loop can no longer run, the
pool's sockets are still closed for real by :func:`close_client_now`.

httpx is an optional dependency: ``pip install resourceloop[httpx]`` (``SUPPORTED_HTTPX``).
This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from resourceloop import ResourceTemplate
from resourceloop.contrib._asyncio import force_close
from resourceloop.contrib._template import client_template

__all__ = ["SUPPORTED_HTTPX", "async_client_template", "close_client", "close_client_now"]

SUPPORTED_HTTPX = ">=0.27,<0.29"
"""The httpx versions this module supports (with httpcore 1.x): those of the ``httpx`` extra."""

# The loop each template-made client was created on, weakly (a client that holds no
# connection must not keep its loop alive). uvloop's transports do not name their loop.
_loops: weakref.WeakKeyDictionary[httpx.AsyncClient, weakref.ref[asyncio.AbstractEventLoop]] = (
    weakref.WeakKeyDictionary()
)


def async_client_template(
    *, name: str = "httpx.AsyncClient", lazy: bool = False, **client_kwargs: Any
) -> ResourceTemplate[httpx.AsyncClient]:
    """Return a template that gives each event loop its own ``httpx.AsyncClient``.

    The client is created on the loop that first asks for it, as
    ``httpx.AsyncClient(**client_kwargs)``. Its graceful release is
    ``await client.aclose()`` on that loop (bounded by ``release_timeout``); its forced
    release, when the loop can no longer run, is :func:`close_client_now`.

    Args:
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the client out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        **client_kwargs: Passed to ``httpx.AsyncClient`` for every client (``timeout=``,
            ``headers=``, ``base_url=``, ``limits=``, ``http2=`` ...).

    Returns:
        A ``ResourceTemplate[httpx.AsyncClient]``; ``await template.acquire()`` on any loop
        returns that loop's client.

    Raises:
        TypeError: ``client_kwargs`` contains ``transport`` or ``mounts``: a transport's
            connection pool belongs to the loop that first used it, so one instance cannot
            serve every loop's client (pass ``limits=``, ``proxy=``, ``verify=`` ... instead,
            and each client builds its own).

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    for bound in ("transport", "mounts"):
        if bound in client_kwargs:
            raise TypeError(
                f"async_client_template() cannot take {bound}=: one transport would be shared "
                "by the clients of every event loop, but its connection pool belongs to one; "
                "pass the transport's settings (limits=, proxy=, verify=, http2=) instead"
            )

    async def open_client() -> httpx.AsyncClient:
        client = httpx.AsyncClient(**client_kwargs)
        _loops[client] = weakref.ref(asyncio.get_running_loop())
        return client

    return client_template(open_client, close_client, close_client_now, name=name, lazy=lazy)


async def close_client(client: httpx.AsyncClient) -> None:
    """Close ``client`` gracefully; the template's release function.

    Call it from a coroutine on the client's own loop.

    .. versionadded:: 0.1.0
    """
    await client.aclose()


def close_client_now(client: httpx.AsyncClient) -> None:
    """Close ``client`` and every socket of its pools synchronously, whatever its loop's state.

    httpx has no synchronous close for an ``AsyncClient``: ``aclose()`` must be awaited on the
    client's loop, so once that loop is closed the pool's sockets stay open until the garbage
    collector finds them ("unclosed transport" ``ResourceWarning``). This function aborts each
    connection's asyncio transport on the loop's thread when the loop runs, here when it is
    idle, and closes the sockets directly when it is closed (``_asyncio.force_close``); then
    the pools forget their connections and the client is marked closed, so it refuses new
    requests as ``aclose()`` would have it.

    This is the only function in resourceloop that touches httpx's and httpcore's internals:
    ``AsyncClient._transport``/``_mounts``/``_state``, ``AsyncHTTPTransport._pool``,
    ``AsyncConnectionPool._connections``, the ``_connection``/``_network_stream`` chain of
    httpcore's connections (plain, HTTP/2, proxied), ``AnyIOStream._stream``, and anyio's
    ``SocketStream._transport`` (under ``TLSStream.transport_stream``). Checked with real
    sockets (``tests/test_contrib_clients.py``) against httpx 0.27.2 (httpcore 1.0.9) and 0.28.1
    (httpcore 1.0.9), anyio 4.x; the oldest on CPython 3.10 (``nox -s contrib_oldest``), the
    newest on 3.10 to 3.13 (``nox -s tests``); ``SUPPORTED_HTTPX`` is the range of the ``httpx``
    extra. A custom ``transport=`` that is not an ``httpx.AsyncHTTPTransport`` is only marked
    closed: its sockets are its own business.

    Args:
        client: The client to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """

    def asyncio_transport(connection: Any) -> Any:
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

    pools: list[Any] = []
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_connections"):
            pools.append(pool)
    connections = [conn for pool in pools for conn in list(pool._connections)]
    transports = [t for t in map(asyncio_transport, connections) if t is not None]

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
        client._state = httpx._client.ClientState.CLOSED

    steps: list[Callable[[], object]] = [transport.abort for transport in transports]
    steps.append(mark_closed)
    force_close(loop, transports, steps)
