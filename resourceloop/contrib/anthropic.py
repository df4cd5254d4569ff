"""A ``ResourceTemplate`` for ``anthropic.AsyncAnthropic``: one SDK client per event loop.

::

    from resourceloop.contrib.anthropic import async_anthropic_template

    claude_clients = async_anthropic_template(max_retries=2)  # api_key from ANTHROPIC_API_KEY


    async def summarize(text: str) -> str:
        client = await claude_clients.acquire()  # this loop's client, created on first use
        message = await client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=512,
            messages=[{"role": "user", "content": f"Summarize: {text}"}],
        )
        return "".join(block.text for block in message.content if block.type == "text")

An ``AsyncAnthropic`` client keeps a pool of connections (an ``httpx2.AsyncClient``) whose
sockets belong to the loop that opened them: reused from another loop, or closed after its loop
ended, it fails with "Event loop is closed", and when its garbage is collected with no loop it
logs "Task exception was never retrieved". Each loop gets its own client here, closed
gracefully with the SDK's own ``await client.close()`` on that loop; when the loop can no
longer run, the client's sockets are still closed for real, as the httpx template's forced
release does.

**One SSL context per template.** Each loop's client is built on
``anthropic.DefaultAsyncHttpxClient(verify=context, ...)`` (the SDK's timeout, limits and
redirects), where ``context`` is one ``ssl.SSLContext`` shared by every loop: ``verify=`` in
``http_client_kwargs`` when it is a context (used as given), otherwise made once by
``httpx2.create_ssl_context()``. A new SDK client would otherwise load the CA store each time
(25 ms or more). A forked child keeps the parent's context.

anthropic is an optional dependency: ``pip install resourceloop[anthropic]``
(``SUPPORTED_ANTHROPIC``). This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

from resourceloop import ResourceTemplate
from resourceloop.contrib._sdk import close_sdk_client, close_sdk_client_now, sdk_template

__all__ = [
    "SUPPORTED_ANTHROPIC",
    "async_anthropic_template",
    "close_anthropic",
    "close_anthropic_now",
]

SUPPORTED_ANTHROPIC = ">=2.0,<3"
"""The anthropic versions this module supports (built on httpx2): those of its extra."""


def async_anthropic_template(
    *,
    name: str = "anthropic.AsyncAnthropic",
    lazy: bool = False,
    http_client_kwargs: Mapping[str, Any] | None = None,
    **client_kwargs: Any,
) -> ResourceTemplate[anthropic.AsyncAnthropic]:
    """Return a template that gives each event loop its own ``anthropic.AsyncAnthropic``.

    The client is created on the loop that first asks for it, as
    ``anthropic.AsyncAnthropic(http_client=http, **client_kwargs)`` with
    ``http = anthropic.DefaultAsyncHttpxClient(verify=context, **http_client_kwargs)``, where
    ``context`` is the template's one ``ssl.SSLContext``. Its graceful release is the SDK's
    ``await client.close()`` on that loop (bounded by ``release_timeout``); its forced release,
    when the loop can no longer run, is :func:`close_anthropic_now`.

    Args:
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the client out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        http_client_kwargs: Passed to ``anthropic.DefaultAsyncHttpxClient`` for every loop's
            HTTP client (``limits=``, ``proxy=``, ``http2=`` ...); ``verify=`` and ``cert=``
            make the shared SSL context.
        **client_kwargs: Passed to ``anthropic.AsyncAnthropic`` for every client (``api_key=``,
            ``base_url=``, ``organization=``, ``max_retries=``, ``timeout=`` ...).

    Returns:
        A ``ResourceTemplate[anthropic.AsyncAnthropic]``; ``await template.acquire()`` on any loop
        returns that loop's client.

    Raises:
        TypeError: ``client_kwargs`` contains ``http_client``, or ``http_client_kwargs``
            contains ``transport`` or ``mounts``: one instance would be shared by the clients of
            every loop although its connections belong to one.

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    return sdk_template(
        anthropic.AsyncAnthropic,
        anthropic.DefaultAsyncHttpxClient,
        function="async_anthropic_template",
        release=close_anthropic,
        force_release=close_anthropic_now,
        name=name,
        lazy=lazy,
        http_client_kwargs=http_client_kwargs,
        client_kwargs=client_kwargs,
    )


async def close_anthropic(client: anthropic.AsyncAnthropic) -> None:
    """Close ``client`` gracefully with its own ``close()``; the template's release function.

    Call it from a coroutine on the client's own loop.

    .. versionadded:: 0.1.0
    """
    await close_sdk_client(client)


def close_anthropic_now(client: anthropic.AsyncAnthropic) -> None:
    """Close every socket of a template-made ``client`` synchronously, whatever its loop's state.

    The SDK's ``close()`` must be awaited on the client's loop. This closes the
    ``httpx2.AsyncClient`` the template gave the client as
    :func:`resourceloop.contrib.httpx.close_client_now` does (same internals, in httpx2 and
    httpcore2): on the loop's thread when it runs, here when it is idle, and the sockets
    directly when it is closed; then the HTTP client is marked closed. A client the template
    did not make is left alone. Checked with real sockets (``tests/test_contrib_llm.py``)
    against anthropic 2.0.0 (httpx2 2.14.0) and 2.17.0 (httpx2 2.17.0).

    Args:
        client: The client to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    close_sdk_client_now(client)
