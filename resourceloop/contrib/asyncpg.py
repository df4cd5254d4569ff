"""A ``ResourceTemplate`` for ``asyncpg.Pool``: one connection pool per event loop.

::

    from resourceloop.contrib.asyncpg import pool_template

    pools = pool_template("postgresql://app@localhost/app", min_size=1, max_size=5)


    async def user_count() -> int:
        pool = await pools.acquire()  # this loop's pool, created (and connected) on first use
        async with pool.acquire() as connection:
            return int(await connection.fetchval("SELECT count(*) FROM users"))

An asyncpg pool and its connections belong to the loop that made them. Each loop gets its own
pool, closed gracefully with ``await pool.close()`` on that loop (which waits for every
connection to come back, so it is bounded by ``release_timeout``); when that times out, or the
loop can no longer run, every connection is still terminated and its socket closed for real by
:func:`terminate_now`: no "Event loop is closed", no "unclosed connection" warning.

**One SSL context per template.** With ``ssl=True`` asyncpg builds a new
``ssl.create_default_context()`` (loading the system's CA store: tens of milliseconds) for
every connection it opens; the template builds that context once, on first use, and passes it
to every loop's pool as ``ssl=``. A context you pass as ``ssl=`` is used as given; an
``sslmode`` string (``ssl="verify-full"``, or ``sslmode=`` in the DSN) is left to asyncpg,
which builds a context per connection: pass ``ssl=context`` to share one. A forked child keeps
the parent's context.

asyncpg is an optional dependency: ``pip install resourceloop[asyncpg]``
(``SUPPORTED_ASYNCPG``). This module imports it; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from resourceloop import ResourceTemplate
from resourceloop.contrib._asyncio import force_close
from resourceloop.contrib._template import BuiltOnce, client_template

__all__ = [
    "SUPPORTED_ASYNCPG",
    "close_pool",
    "default_ssl_context",
    "pool_template",
    "terminate_now",
]

SUPPORTED_ASYNCPG = ">=0.29,<0.33"
"""The asyncpg versions this module supports: those of the ``asyncpg`` extra."""


def pool_template(
    dsn: str | None = None,
    *,
    name: str = "asyncpg.Pool",
    lazy: bool = False,
    **pool_kwargs: Any,
) -> ResourceTemplate[asyncpg.Pool]:
    """Return a template that gives each event loop its own ``asyncpg.Pool``.

    The pool is created on the loop that first asks for it, as
    ``await asyncpg.create_pool(dsn, **pool_kwargs)`` (which opens ``min_size``
    connections), except that ``ssl=True`` becomes one :func:`default_ssl_context` shared by
    every pool. Its graceful release is ``await pool.close()`` on that loop, bounded by
    ``release_timeout``; its forced release (the close timed out, or the loop can no longer
    run) is :func:`terminate_now`.

    Args:
        dsn: A ``postgresql://`` DSN, or ``None`` to pass ``host=``, ``user=`` ... in
            ``pool_kwargs`` (or use the ``PG*`` environment variables).
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the pool out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        **pool_kwargs: Passed to ``asyncpg.create_pool`` for every pool (``min_size=``,
            ``max_size=``, ``command_timeout=``, ``server_settings=``, ``init=`` ...).

    Returns:
        A ``ResourceTemplate[asyncpg.Pool]``; ``await template.acquire()`` on any loop returns
        that loop's pool.

    Raises:
        TypeError: ``dsn`` is not a string or ``None``, or ``pool_kwargs`` contains ``loop``,
            which would tie every loop's pool to one loop.

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    if dsn is not None and not isinstance(dsn, str):
        raise TypeError(f"dsn must be a str or None, got {dsn!r}")
    if "loop" in pool_kwargs:
        raise TypeError(
            "pool_template() cannot take loop=: each event loop gets a pool of its own, "
            "created on that loop"
        )

    context = BuiltOnce(default_ssl_context) if pool_kwargs.get("ssl") is True else None

    async def open_pool() -> asyncpg.Pool:
        if context is not None:
            return await asyncpg.create_pool(dsn, **{**pool_kwargs, "ssl": context.get()})
        return await asyncpg.create_pool(dsn, **pool_kwargs)

    return client_template(open_pool, close_pool, terminate_now, name=name, lazy=lazy)


def default_ssl_context() -> ssl.SSLContext:
    """The context asyncpg builds for ``ssl=True``: ``ssl.create_default_context()`` (verify
    the server's certificate and host name against the system's CA store), with the
    ``postgresql`` ALPN protocol that direct TLS needs.

    The contrib templates build it once each and pass it as ``ssl=`` to every connection.
    Safe to call from any thread.

    .. versionadded:: 0.1.0
    """
    context = ssl.create_default_context()
    if ssl.HAS_ALPN:
        context.set_alpn_protocols(["postgresql"])
    return context


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close ``pool`` gracefully; the template's release function.

    ``Pool.close()`` waits until every acquired connection has been released, which
    ``release_timeout`` bounds. Call it from a coroutine on the pool's own loop.

    .. versionadded:: 0.1.0
    """
    await pool.close()


def terminate_now(target: asyncpg.Pool | Iterable[asyncpg.Connection]) -> None:
    """Terminate a pool (or some connections) and close their sockets, whatever the loop's state.

    asyncpg's ``Pool.terminate()`` is synchronous but needs a loop that is open: on a closed
    loop it raises "Event loop is closed" (from the maintenance task's ``cancel()`` or the
    first transport's ``abort()``), never reaches the other connections, and leaves their
    sockets open until the garbage collector finds them. This function does what
    ``Pool.terminate()`` does, one object at a time, on the loop's thread when the loop runs,
    here when it is idle, and after closing the sockets directly when it is closed
    (``_asyncio.force_close``), so every connection ends closed (``is_closed()`` is true) and
    none warns later.

    This is the only function in resourceloop that touches asyncpg's internals:
    ``Pool._loop``/``_closed``/``_holders``/``_maintenance_task`` (0.32),
    ``PoolConnectionHolder._con``, ``Connection._loop``/``_transport``, and
    ``Connection.terminate()``. Checked against PostgreSQL 15 with real sockets
    (``tests/test_contrib_clients.py``) with asyncpg 0.29.0 and 0.32.0; the oldest on CPython
    3.10 (``nox -s contrib_oldest``), the newest on 3.10 to 3.13 (``nox -s tests``);
    ``SUPPORTED_ASYNCPG`` is the range of the ``asyncpg`` extra.

    Args:
        target: The pool to terminate (all its connections, idle or acquired), or asyncpg
            connections (``resourceloop.contrib.sqlalchemy`` passes its engine's). Doing it
            twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    steps: list[Callable[[], object]] = []
    if isinstance(target, asyncpg.Pool):
        pool = target
        loop = pool._loop
        connections = [h._con for h in pool._holders if h._con is not None]

        def close_pool_now() -> None:
            pool._closed = True  # as terminate() does first: no new maintenance task
            task = getattr(pool, "_maintenance_task", None)
            if task is not None and not task.done():
                try:
                    task.cancel()
                except RuntimeError:  # its loop is closed: it can never run, so never warn
                    task._log_destroy_pending = False
                    raise

        steps.append(close_pool_now)
    else:
        connections = list(target)
        loop = next((con._loop for con in connections), None)
    connections = [con for con in connections if not con.is_closed()]
    transports = [con._transport for con in connections if con._transport is not None]

    # Connection.terminate() marks the connection aborted (closed) before anything that can
    # fail on a closed loop, so a connection whose step raised there still counts as closed.
    steps.extend(con.terminate for con in connections)
    force_close(loop, transports, steps)
