"""A ``ResourceTemplate`` for ``aiohttp.ClientSession``: one session per event loop.

::

    from resourceloop.contrib.aiohttp import client_session_template

    http = client_session_template(timeout=aiohttp.ClientTimeout(total=10))


    async def fetch(url: str) -> bytes:
        session = await http.acquire()  # this loop's session, created on first use
        async with session.get(url) as response:
            return await response.read()

Each loop gets its own session, closed gracefully (``await session.close()``) on that loop when
it leaves a ``resource_manager``, or just before it closes (``asyncio.run``, asgiref, Flask
async views, ``uvloop.run``). When the loop is already closed or can no longer run, the
session's sockets are still closed for real by :func:`close_session_now`, without aiohttp's
"Unclosed client session"/"Unclosed connector" warnings and without "Event loop is closed"
errors.

**SSL contexts.** aiohttp builds its default verifying context once per process and shares it
between connectors, so a session per loop costs no TLS setup; an ``ssl=`` context you give a
connector (``connector_factory=lambda: aiohttp.TCPConnector(ssl=context)``) is used as given:
make it once, outside the factory, and every loop's connector shares it.

aiohttp is an optional dependency: ``pip install resourceloop[aiohttp]``. This module imports
it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp

from resourceloop import ResourceTemplate
from resourceloop.contrib._template import client_template

__all__ = [
    "SUPPORTED_AIOHTTP",
    "client_session_template",
    "close_session",
    "close_session_now",
]

SUPPORTED_AIOHTTP = ">=3.12,<4"
"""The aiohttp versions this module supports: those of the ``aiohttp`` extra."""


def client_session_template(
    *,
    name: str = "aiohttp.ClientSession",
    lazy: bool = False,
    connector_factory: Callable[[], aiohttp.BaseConnector] | None = None,
    **session_kwargs: Any,
) -> ResourceTemplate[aiohttp.ClientSession]:
    """Return a template that gives each event loop its own ``aiohttp.ClientSession``.

    The session is created on the loop that first asks for it, as
    ``aiohttp.ClientSession(**session_kwargs)``. Its graceful release is
    ``await session.close()`` on that loop (bounded by ``release_timeout``); its forced
    release, when the loop can no longer run, is :func:`close_session_now`.

    Args:
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the session out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        connector_factory: Called on the loop to make each session's connector (a connector is
            bound to one loop, so it cannot be shared through ``session_kwargs``).
        **session_kwargs: Passed to ``aiohttp.ClientSession`` for every session
            (``timeout=``, ``headers=``, ``base_url=``, ``raise_for_status=`` ...).

    Returns:
        A ``ResourceTemplate[aiohttp.ClientSession]``; ``await template.acquire()`` on any
        loop returns that loop's session.

    Raises:
        TypeError: ``session_kwargs`` contains ``connector`` or ``loop``, which would tie
            every loop's session to one loop.

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    for bound in ("connector", "loop"):
        if bound in session_kwargs:
            raise TypeError(
                f"client_session_template() cannot take {bound}=: it would be shared by the "
                "sessions of every event loop, but it belongs to one; pass "
                "connector_factory=lambda: aiohttp.TCPConnector(...) instead"
            )
    if connector_factory is not None and not callable(connector_factory):
        raise TypeError(f"connector_factory must be callable or None, got {connector_factory!r}")

    def open_session() -> aiohttp.ClientSession:  # called on the loop, in acquire()
        if connector_factory is None:
            return aiohttp.ClientSession(**session_kwargs)
        return aiohttp.ClientSession(connector=connector_factory(), **session_kwargs)

    return client_template(open_session, close_session, close_session_now, name=name, lazy=lazy)


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close ``session`` gracefully; the template's release function.

    Call it from a coroutine on the session's own loop.

    .. versionadded:: 0.1.0
    """
    await session.close()


def close_session_now(session: aiohttp.ClientSession) -> None:
    """Close ``session`` and its sockets synchronously, even when its loop is closed or idle.

    aiohttp has no public synchronous close: ``ClientSession.close()`` must be awaited on the
    session's loop, and once that loop is closed, aiohttp's own ``BaseConnector._close()``
    marks the connector closed but leaves every socket open (each is closed, with an
    "unclosed transport" ``ResourceWarning``, only when the garbage collector finds it). This
    function does better:

    * loop running (in this thread or another): ``BaseConnector._close()`` is scheduled on the
      loop's own thread, which closes the transports the normal way;
    * loop open but idle: ``BaseConnector._close()``, then one iteration of the loop run here
      (when this thread runs no loop) so the transports finish closing;
    * loop closed, or the above left a socket open: the underlying ``socket.socket`` of each
      asyncio selector transport (unwrapping SSL transports) is closed directly and detached
      from its transport, so nothing warns later. uvloop closes its own transports when its
      loop closes (warning "unclosed resource" from ``loop.close()`` itself, which only a
      graceful release avoids), so there is nothing left to close.

    This is the only function in resourceloop that touches aiohttp's internals:
    ``ClientSession._connector``/``_connector_owner``, ``BaseConnector._loop``, ``_conns``,
    ``_acquired``, ``_cleanup_closed_transports`` and ``_close()``, and asyncio's
    ``_SelectorTransport._sock`` and ``_SSLProtocolTransport._ssl_protocol``/``_closed``.
    Checked, with real sockets (``tests/test_contrib_aiohttp.py``), against aiohttp 3.12.15,
    3.13.5 and 3.14.5 on CPython 3.10 to 3.13 and uvloop 0.23; the ``aiohttp`` extra asks for
    ``>=3.12,<4``. This function also works with aiohttp 3.9.5, 3.10.11 and 3.11.18, but
    there ``ClientSession.close()`` returns before TLS connections finish closing, so the
    graceful release of an HTTPS session can leave its sockets open when the loop closes.

    Args:
        session: The session to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    connector = session.connector
    if connector is None or connector.closed:
        return
    if not getattr(session, "_connector_owner", True):
        session._connector = None  # someone else's connector: detach it, as close() does
        return
    loop: asyncio.AbstractEventLoop = connector._loop
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    # Every transport the connector holds (idle, acquired, awaiting a cleanup abort), taken
    # before _close() forgets them.
    protocols = [proto for conns in connector._conns.values() for proto, _ in conns]
    protocols.extend(connector._acquired)
    transports: list[Any] = [getattr(proto, "transport", None) for proto in protocols]
    transports.extend(getattr(connector, "_cleanup_closed_transports", ()))

    if not loop.is_closed() and loop.is_running():
        if running is loop:
            connector._close()
            return
        try:
            loop.call_soon_threadsafe(connector._close)
            return
        except RuntimeError:  # it closed in between: close the sockets here
            pass
    try:
        connector._close()  # on a closed loop this only marks it closed (aiohttp >= 3.9)
    except RuntimeError:  # pragma: no cover - "Event loop is closed" from an older aiohttp
        pass
    if not loop.is_closed() and running is None:
        try:
            loop.run_until_complete(asyncio.sleep(0))  # runs the scheduled connection_lost
        except RuntimeError:  # it started running elsewhere, or closed: close sockets here
            pass
    # What is still open: close the real socket under each transport (under an SSL transport,
    # the transport it wraps) and detach it, so that the transport's __del__ stays quiet.
    while transports:
        transport = transports.pop()
        ssl_protocol = getattr(transport, "_ssl_protocol", None)
        if ssl_protocol is not None:
            transport._closed = True
            transports.append(getattr(ssl_protocol, "_transport", None))
            continue
        sock = getattr(transport, "_sock", None)
        if isinstance(sock, socket.socket):
            sock.close()
            transport._sock = None
    session._connector = None
