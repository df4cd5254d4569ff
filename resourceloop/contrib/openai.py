"""A ``ResourceTemplate`` for ``openai.AsyncOpenAI``: one SDK client per event loop.

::

    from resourceloop.contrib.openai import async_openai_template

    openai_clients = async_openai_template(max_retries=2)  # api_key from OPENAI_API_KEY


    async def summarize(text: str) -> str:
        client = await openai_clients.acquire()  # this loop's client, created on first use
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Summarize: {text}"}]
        )
        return completion.choices[0].message.content or ""

An ``AsyncOpenAI`` client keeps a pool of connections (an ``httpx2.AsyncClient``) whose sockets
belong to the loop that opened them: reused from another loop, or closed after its loop
(``asyncio.run`` then ``aclose()``), it fails with "Event loop is closed"
(openai/openai-python#1254), and when its garbage is collected with no loop it logs "Task
exception was never retrieved". Each loop gets its own client here, closed gracefully with the
SDK's own ``await client.close()`` on that loop; when the loop can no longer run, the client's
sockets are still closed for real, as the httpx template's forced release does.

**One SSL context per template.** Each loop's client is built on
``openai.DefaultAsyncHttpxClient(verify=context, ...)`` (the SDK's timeout, limits and
redirects), where ``context`` is one ``ssl.SSLContext`` shared by every loop: ``verify=`` in
``http_client_kwargs`` when it is a context (used as given), otherwise made once by
``httpx2.create_ssl_context()``. A new SDK client would otherwise load the CA store each time
(25 ms or more). A forked child keeps the parent's context.

openai is an optional dependency: ``pip install resourceloop[openai]`` (``SUPPORTED_OPENAI``).
This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from resourceloop import ResourceTemplate
from resourceloop.contrib._sdk import close_sdk_client, close_sdk_client_now, sdk_template

__all__ = ["SUPPORTED_OPENAI", "async_openai_template", "close_openai", "close_openai_now"]

SUPPORTED_OPENAI = ">=3.0,<4"
"""The openai versions this module supports (built on httpx2): those of the ``openai`` extra."""


def async_openai_template(
    *,
    name: str = "openai.AsyncOpenAI",
    lazy: bool = False,
    http_client_kwargs: Mapping[str, Any] | None = None,
    **client_kwargs: Any,
) -> ResourceTemplate[openai.AsyncOpenAI]:
    """Return a template that gives each event loop its own ``openai.AsyncOpenAI``.

    The client is created on the loop that first asks for it, as
    ``openai.AsyncOpenAI(http_client=http, **client_kwargs)`` with
    ``http = openai.DefaultAsyncHttpxClient(verify=context, **http_client_kwargs)``, where
    ``context`` is the template's one ``ssl.SSLContext``. Its graceful release is the SDK's
    ``await client.close()`` on that loop (bounded by ``release_timeout``); its forced release,
    when the loop can no longer run, is :func:`close_openai_now`.

    Args:
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the client out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        http_client_kwargs: Passed to ``openai.DefaultAsyncHttpxClient`` for every loop's
            HTTP client (``limits=``, ``proxy=``, ``http2=`` ...); ``verify=`` and ``cert=``
            make the shared SSL context.
        **client_kwargs: Passed to ``openai.AsyncOpenAI`` for every client (``api_key=``,
            ``base_url=``, ``organization=``, ``max_retries=``, ``timeout=`` ...).

    Returns:
        A ``ResourceTemplate[openai.AsyncOpenAI]``; ``await template.acquire()`` on any loop
        returns that loop's client.

    Raises:
        TypeError: ``client_kwargs`` contains ``http_client``, or ``http_client_kwargs``
            contains ``transport`` or ``mounts``: one instance would be shared by the clients of
            every loop although its connections belong to one.

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    return sdk_template(
        openai.AsyncOpenAI,
        openai.DefaultAsyncHttpxClient,
        function="async_openai_template",
        release=close_openai,
        force_release=close_openai_now,
        name=name,
        lazy=lazy,
        http_client_kwargs=http_client_kwargs,
        client_kwargs=client_kwargs,
    )


async def close_openai(client: openai.AsyncOpenAI) -> None:
    """Close ``client`` gracefully with its own ``close()``; the template's release function.

    Call it from a coroutine on the client's own loop.

    .. versionadded:: 0.1.0
    """
    await close_sdk_client(client)


def close_openai_now(client: openai.AsyncOpenAI) -> None:
    """Close every socket of a template-made ``client`` synchronously, whatever its loop's state.

    The SDK's ``close()`` must be awaited on the client's loop. This closes the
    ``httpx2.AsyncClient`` the template gave the client as
    :func:`resourceloop.contrib.httpx.close_client_now` does (same internals, in httpx2 and
    httpcore2): on the loop's thread when it runs, here when it is idle, and the sockets
    directly when it is closed; then the HTTP client is marked closed. A client the template
    did not make is left alone. Checked with real sockets (``tests/test_contrib_llm.py``)
    against openai 3.0.0 (httpx2 2.14.0) and 3.63.0 (httpx2 2.17.0).

    Args:
        client: The client to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    close_sdk_client_now(client)
