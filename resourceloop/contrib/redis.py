"""A ``ResourceTemplate`` for ``redis.asyncio.Redis``: one client (and pool) per event loop.

::

    from resourceloop.contrib.redis import redis_template

    clients = redis_template("redis://localhost:6379/0", decode_responses=True)


    async def count_visit(page: str) -> int:
        client = await clients.acquire()  # this loop's client, created on first use
        return int(await client.incr(f"visits:{page}"))

redis-py's asyncio connections are ``asyncio`` streams of the loop that opened them. Each loop
gets its own client with its own connection pool, closed gracefully with
``await client.aclose()`` on that loop; when the loop can no longer run, every connection's
socket is still closed for real by :func:`close_redis_now`, without redis-py's "unclosed
Connection" warning.

**SSL contexts.** With ``rediss://`` (or ``ssl=True``), redis-py 8.2 makes one
``ssl.SSLContext`` per set of ``ssl_*`` settings and shares it between all connections, of
every loop's client, by itself; older releases (5.0.1 checked) make one per connection, as
they would without resourceloop. A URL is parsed once, when the template is made (parsing
it took a third of making a client); each loop gets its own pool, made from the parsed
options.

redis-py is an optional dependency: ``pip install resourceloop[redis]`` (``SUPPORTED_REDIS``).
This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio

from resourceloop import ResourceTemplate
from resourceloop.contrib._asyncio import force_close
from resourceloop.contrib._template import client_template

__all__ = ["SUPPORTED_REDIS", "close_redis", "close_redis_now", "redis_template"]

SUPPORTED_REDIS = ">=5.0.1,<9"
"""The redis-py versions this module supports: those of the ``redis`` extra."""


def redis_template(
    url: str | None = None,
    *,
    name: str = "redis.asyncio.Redis",
    lazy: bool = False,
    **kwargs: Any,
) -> ResourceTemplate[redis.asyncio.Redis]:
    """Return a template that gives each event loop its own ``redis.asyncio.Redis``.

    The client is created on the loop that first asks for it, as
    ``Redis.from_url(url, **kwargs)`` would make it when ``url`` is given (the URL parsed once,
    here) and as ``Redis(**kwargs)`` otherwise; either way it gets a connection pool of its
    own. Its graceful release is
    ``await client.aclose()`` on that loop (bounded by ``release_timeout``); its forced
    release, when the loop can no longer run, is :func:`close_redis_now`.

    Args:
        url: A ``redis://``, ``rediss://`` or ``unix://`` URL, or ``None`` to pass
            ``host=``, ``port=`` ... in ``kwargs``.
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the client out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        **kwargs: Passed to ``Redis.from_url``/``Redis`` for every client
            (``decode_responses=``, ``max_connections=``, ``socket_timeout=`` ...).

    Returns:
        A ``ResourceTemplate[redis.asyncio.Redis]``; ``await template.acquire()`` on any loop
        returns that loop's client.

    Raises:
        TypeError: ``url`` is not a string or ``None``, or ``kwargs`` contains
            ``connection_pool``, whose connections would be shared by the clients of every
            loop although each belongs to one (pass the pool's settings instead).
        ValueError: ``url`` is not a URL redis-py accepts (it is parsed here, once).

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str or None, got {url!r}")
    if "connection_pool" in kwargs:
        raise TypeError(
            "redis_template() cannot take connection_pool=: its connections would be shared "
            "by the clients of every event loop, but each belongs to one; pass the pool's "
            "settings (max_connections=, socket_timeout=, ...) and each loop gets its own pool"
        )

    if url is None:

        def open_client() -> redis.asyncio.Redis:  # called on the loop, in acquire()
            return redis.asyncio.Redis(**kwargs)

    else:
        open_client = _from_url(url, kwargs)
    # A ``Redis`` is awaitable (``await Redis(...)`` opens a single-connection client's
    # connection, which its first command also does): the client is the resource as made.
    return client_template(
        open_client, close_redis, close_redis_now, name=name, lazy=lazy, awaitable_client=True
    )


class _PoolOptions(redis.asyncio.ConnectionPool):
    """What ``ConnectionPool.from_url`` would make a pool of: its keyword arguments, kept.

    ``from_url`` merges the URL's options into the keyword arguments with the rules of the
    installed redis-py and passes the result to the class (as its docstring says); this class
    keeps them instead of making a pool, so each loop's pool is made from them with no URL
    parsing (``urllib.parse``: about 59,000 instructions per client on 3.11, a third of
    making one).
    """

    def __init__(self, **options: Any) -> None:  # no pool: nothing to close
        self.options = options


def _from_url(url: str, kwargs: dict[str, Any]) -> Callable[[], redis.asyncio.Redis]:
    """``Redis.from_url(url, **kwargs)`` as a factory that parses ``url`` once, here.

    Per loop it does the rest of what ``from_url`` does (redis-py 5.0.1 to 8.x): a
    ``ConnectionPool`` from the parsed options, and a client on it that owns it
    (``auto_close_connection_pool``). A bad URL raises here, when the template is made.
    ``auto_close_connection_pool=`` (deprecated by redis-py, which warns) still goes through
    ``from_url`` for every client.
    """
    if "auto_close_connection_pool" in kwargs:

        def open_deprecated() -> redis.asyncio.Redis:
            return redis.asyncio.Redis.from_url(url, **kwargs)

        return open_deprecated
    pool_kwargs = dict(kwargs)
    single = pool_kwargs.pop("single_connection_client", False)
    options = _PoolOptions.from_url(url, **pool_kwargs).options
    pool_class = redis.asyncio.ConnectionPool
    client_class = redis.asyncio.Redis

    def open_client() -> redis.asyncio.Redis:  # called on the loop, in acquire()
        client = client_class(
            connection_pool=pool_class(**options), single_connection_client=single
        )
        client.auto_close_connection_pool = True
        return client

    return open_client


async def close_redis(client: redis.asyncio.Redis) -> None:
    """Close ``client`` and its connection pool gracefully; the template's release function.

    Call it from a coroutine on the client's own loop.

    .. versionadded:: 0.1.0
    """
    await client.aclose()


def close_redis_now(client: redis.asyncio.Redis) -> None:
    """Close every connection of ``client`` synchronously, whatever its loop's state.

    redis-py has no synchronous close for its asyncio client: ``aclose()`` must be awaited on
    the client's loop, and on a closed loop the connections' sockets stay open until the
    garbage collector finds them (redis-py's "unclosed Connection" and asyncio's "unclosed
    transport" ``ResourceWarning``). This function closes each connection with redis-py's own
    synchronous ``Connection._close()`` on the loop's thread when the loop runs, here when it
    is idle, and after closing the sockets directly when it is closed
    (``_asyncio.force_close``). The pool stays usable (it reconnects), as after
    ``ConnectionPool.disconnect()``; a single-connection client forgets its connection.

    This is the only function in resourceloop that touches redis-py's internals:
    ``Redis.connection``, ``ConnectionPool._available_connections`` and ``_in_use_connections``,
    ``Connection._reader``/``_writer`` and ``_close()``. Checked with real sockets against
    redis-server 7.0 (``tests/test_contrib_clients.py``) with redis-py 5.0.1 and 8.1.0; the
    oldest on CPython 3.10 (``nox -s contrib_oldest``), the newest on 3.10 to 3.13 (``nox -s
    tests``); ``SUPPORTED_REDIS`` is the range of the ``redis`` extra. Only ``ConnectionPool``
    and its subclasses (``BlockingConnectionPool``, sentinel pools) are handled;
    ``RedisCluster`` is not. On uvloop, ``loop.close()`` closes the sockets itself, but its
    transports never report ``is_closing()`` afterwards, so asyncio's ``StreamWriter.__del__``
    warns "loop is closed" for each connection: only a graceful release avoids that.

    Args:
        client: The client to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    pool = client.connection_pool
    connections: list[Any] = list(getattr(pool, "_available_connections", ()))
    connections.extend(getattr(pool, "_in_use_connections", ()))
    single = getattr(client, "connection", None)
    if single is not None and single not in connections:
        connections.append(single)
    connections = [conn for conn in connections if getattr(conn, "_writer", None) is not None]
    transports = [conn._writer.transport for conn in connections]
    loop = None
    for conn in connections:
        loop = getattr(conn._reader, "_loop", None)
        if loop is not None:
            break

    def closer(conn: Any) -> Callable[[], object]:
        """redis-py's own synchronous close of one connection (``_close``, or what it does)."""
        close = getattr(conn, "_close", None)
        if close is not None:
            return close  # type: ignore[no-any-return]

        def close_streams() -> None:
            if conn._writer is not None:
                conn._writer.close()
            conn._writer = conn._reader = None

        return close_streams

    steps: list[Callable[[], object]] = [closer(conn) for conn in connections]
    if single is not None:
        steps.append(lambda: setattr(client, "connection", None))
    force_close(loop, transports, steps)
