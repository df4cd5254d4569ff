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

**One SSL context per template.** A new ``httpx.AsyncClient`` builds a new ``ssl.SSLContext``
and loads the CA bundle into it (25 to 55 ms, even for plain HTTP), which a loop per call would
pay on every call. The template builds that context once, on first use, from ``verify=``,
``cert=`` and ``trust_env=`` exactly as httpx would, and gives it to every loop's client; a
context you pass as ``verify=`` is used as given. A forked child keeps the parent's context.

httpx is an optional dependency: ``pip install resourceloop[httpx]`` (``SUPPORTED_HTTPX``).
This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from resourceloop import ResourceTemplate
from resourceloop.contrib._httpcore import close_async_client_now, remember_loop
from resourceloop.contrib._template import BuiltOnce, client_template

__all__ = ["SUPPORTED_HTTPX", "async_client_template", "close_client", "close_client_now"]

SUPPORTED_HTTPX = ">=0.27,<0.29"
"""The httpx versions this module supports (with httpcore 1.x): those of the ``httpx`` extra."""


def async_client_template(
    *, name: str = "httpx.AsyncClient", lazy: bool = False, **client_kwargs: Any
) -> ResourceTemplate[httpx.AsyncClient]:
    """Return a template that gives each event loop its own ``httpx.AsyncClient``.

    The client is created on the loop that first asks for it, as
    ``httpx.AsyncClient(verify=context, **client_kwargs)``, where ``context`` is one
    ``ssl.SSLContext`` shared by every loop's client: ``verify=`` itself when it is an
    ``ssl.SSLContext`` (used as given), otherwise ``httpx.create_ssl_context()`` of ``verify=``,
    ``cert=`` and ``trust_env=``, built once on first use (so ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` are read then, not per client). Its graceful release is
    ``await client.aclose()`` on that loop (bounded by ``release_timeout``); its forced
    release, when the loop can no longer run, is :func:`close_client_now`.

    Args:
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the client out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        **client_kwargs: Passed to ``httpx.AsyncClient`` for every client (``timeout=``,
            ``headers=``, ``base_url=``, ``limits=``, ``http2=`` ...); ``verify=`` and
            ``cert=`` make the shared SSL context.

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

    context = _shared_ssl_context(
        client_kwargs.pop("verify", True),
        client_kwargs.pop("cert", None),
        client_kwargs.get("trust_env", True),
    )

    def open_client() -> httpx.AsyncClient:  # called on the loop, in acquire()
        client = httpx.AsyncClient(verify=context.get(), **client_kwargs)
        remember_loop(client, asyncio.get_running_loop())
        return client

    return client_template(open_client, close_client, close_client_now, name=name, lazy=lazy)


def _shared_ssl_context(verify: Any, cert: Any, trust_env: bool) -> BuiltOnce[ssl.SSLContext]:
    """The one ``ssl.SSLContext`` of a template: ``verify`` as given, or built once by httpx."""
    if isinstance(verify, ssl.SSLContext) and cert is None:
        return BuiltOnce(lambda: verify)
    return BuiltOnce(
        lambda: httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    )


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

    This function (through ``contrib._httpcore.close_async_client_now``, which the OpenAI and
    Anthropic templates share for their ``httpx2`` clients) is the only one in resourceloop that
    touches httpx's and httpcore's internals:
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
    close_async_client_now(client)
