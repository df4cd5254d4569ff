"""A ``ResourceTemplate`` for SQLAlchemy's ``AsyncEngine``: one engine (and pool) per event loop.

::

    from sqlalchemy import text

    from resourceloop.contrib.sqlalchemy import async_engine_template

    engines = async_engine_template("postgresql+asyncpg://app@localhost/app", pool_size=5)


    async def answer() -> int:
        engine = await engines.acquire()  # this loop's engine, created on first use
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT 42"))).scalar_one())

An ``AsyncEngine``'s pool holds driver connections bound to the loop they were opened on. Each
loop gets its own engine, disposed gracefully with ``await engine.dispose()`` on that loop;
when the loop can no longer run, every connection the engine opened (checked in or out) is
still terminated and its socket closed for real by :func:`close_engine_now`, for the
``postgresql+asyncpg`` driver. Sessions (``async_sessionmaker(engine)``) are cheap: make them
per unit of work from the loop's engine.

**Built once per template**: the URL is parsed once, and with the asyncpg driver
``connect_args={"ssl": True}`` becomes one SSL context
(:func:`resourceloop.contrib.asyncpg.default_ssl_context`) shared by every connection of every
loop's engine, where asyncpg would build one per connection. A context you pass in
``connect_args`` is used as given. A forked child keeps the parent's context.

SQLAlchemy is an optional dependency: ``pip install resourceloop[sqlalchemy]``
(``SUPPORTED_SQLALCHEMY``; the driver is yours to install, e.g. ``resourceloop[asyncpg]``).
This module imports SQLAlchemy; ``import resourceloop`` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from resourceloop import ResourceTemplate
from resourceloop.contrib._template import BuiltOnce, client_template

__all__ = [
    "SUPPORTED_SQLALCHEMY",
    "async_engine_template",
    "close_engine_now",
    "dispose_engine",
]

SUPPORTED_SQLALCHEMY = ">=2.0.20,<2.2"
"""The SQLAlchemy versions this module supports: those of the ``sqlalchemy`` extra."""

# Every driver connection each template-made engine opened and has not closed, weakly: the
# pool only lists the connections checked in, and a forced release must reach them all.
_opened: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()


def async_engine_template(
    url: str,
    *,
    name: str = "sqlalchemy.AsyncEngine",
    lazy: bool = False,
    **engine_kwargs: Any,
) -> ResourceTemplate[AsyncEngine]:
    """Return a template that gives each event loop its own ``AsyncEngine``.

    The engine is created on the loop that first asks for it, as
    ``create_async_engine(url, **engine_kwargs)``; it connects on first use. Its graceful
    release is ``await engine.dispose()`` on that loop (bounded by ``release_timeout``); its
    forced release, when the loop can no longer run, is :func:`close_engine_now`.

    Args:
        url: A database URL with an async driver, e.g. ``postgresql+asyncpg://...``; only
            asyncpg's connections are closed for real by the forced release.
        name: The template's name in warnings, logs, ``stats()`` and errors.
        lazy: Leave the engine out of the eager acquisition of ``resource_manager``; it is
            created on first ``acquire()`` instead.
        **engine_kwargs: Passed to ``create_async_engine`` for every engine (``pool_size=``,
            ``pool_pre_ping=``, ``echo=``, ``connect_args=`` ...).

    Returns:
        A ``ResourceTemplate[AsyncEngine]``; ``await template.acquire()`` on any loop returns
        that loop's engine.

    Raises:
        TypeError: ``url`` is not a string or ``sqlalchemy.URL``, or ``engine_kwargs``
            contains ``pool`` or ``creator``, which would share one pool (or its connections)
            between the engines of every loop.

    Call it from any thread, typically once at module level.

    .. versionadded:: 0.1.0
    """
    from sqlalchemy.engine import URL, make_url

    if not isinstance(url, (str, URL)):
        raise TypeError(f"url must be a str or sqlalchemy.URL, got {url!r}")
    for bound in ("pool", "creator", "async_creator"):
        if bound in engine_kwargs:
            raise TypeError(
                f"async_engine_template() cannot take {bound}=: it would share connections "
                "between the engines of every event loop, but each connection belongs to "
                "one; pass poolclass= and the pool's settings instead"
            )

    parsed = make_url(url)
    connect_args = engine_kwargs.get("connect_args")
    if (
        parsed.get_driver_name() == "asyncpg"
        and isinstance(connect_args, dict)
        and connect_args.get("ssl") is True
    ):
        from resourceloop.contrib.asyncpg import default_ssl_context

        context = BuiltOnce(default_ssl_context)
        asked = connect_args

        def with_context() -> dict[str, Any]:
            return {**engine_kwargs, "connect_args": {**asked, "ssl": context.get()}}

        kwargs = with_context
    else:

        def kwargs() -> dict[str, Any]:
            return engine_kwargs

    def open_engine() -> AsyncEngine:  # called on the loop, in acquire()
        engine = create_async_engine(parsed, **kwargs())
        opened: weakref.WeakSet[Any] = weakref.WeakSet()
        _opened[engine.sync_engine] = opened

        # Pool events are public API, and Engine.dispose() carries them over to the new pool.
        @event.listens_for(engine.sync_engine, "connect")
        def remember(dbapi_connection: Any, record: Any) -> None:
            driver = getattr(record, "driver_connection", None)
            if driver is not None:
                opened.add(driver)

        return engine

    return client_template(open_engine, dispose_engine, close_engine_now, name=name, lazy=lazy)


async def dispose_engine(engine: AsyncEngine) -> None:
    """Dispose of ``engine``'s pool gracefully; the template's release function.

    Call it from a coroutine on the engine's own loop.

    .. versionadded:: 0.1.0
    """
    await engine.dispose()


def close_engine_now(engine: AsyncEngine) -> None:
    """Close every connection ``engine`` opened, synchronously, whatever its loop's state.

    ``AsyncEngine.dispose()`` must be awaited on the engine's loop (the asyncpg dialect closes
    connections through greenlets running on it), so once that loop is closed the pool's
    sockets stay open until the garbage collector finds them, with "unclosed connection"
    warnings. This function terminates each asyncpg connection the engine opened, checked in
    or out, with :func:`resourceloop.contrib.asyncpg.terminate_now` (which deals with the
    loop's state), then drops the pool with ``Engine.dispose(close=False)``, SQLAlchemy's
    public way to forget connections without touching them.

    This is the only function in resourceloop that touches SQLAlchemy's internals: the
    checked-in connection records of ``QueuePool._pool`` (``ConnectionPoolEntry``'s public
    ``driver_connection``), read only for an engine not made by :func:`async_engine_template` (a
    template's engine remembers every connection through the public ``connect`` pool event).
    Checked with real sockets against PostgreSQL 15 (``tests/test_contrib_clients.py``) with
    SQLAlchemy 2.0.20 and 2.1.9 and asyncpg 0.29.0 and 0.32.0; the oldest on CPython 3.10 (``nox
    -s contrib_oldest``), the newest on 3.10 to 3.13 (``nox -s tests``);
    ``SUPPORTED_SQLALCHEMY`` is the range of the ``sqlalchemy`` extra. Drivers other than
    asyncpg are not closed here: their connections are dropped with the pool and closed by their
    driver when collected.

    Args:
        engine: The engine to close; closing it twice is a no-op.

    Safe to call from any thread. It is the template's ``force_release_func``.

    .. versionadded:: 0.1.0
    """
    sync_engine = engine.sync_engine
    opened = _opened.get(sync_engine)
    drivers: list[Any] = list(opened) if opened is not None else []
    if opened is None:  # not one of ours: what the pool holds checked in is all we can reach
        queue = getattr(getattr(sync_engine.pool, "_pool", None), "queue", ())
        drivers = [getattr(record, "driver_connection", None) for record in list(queue)]
    drivers = [driver for driver in drivers if driver is not None]
    if any(type(driver).__module__.startswith("asyncpg") for driver in drivers):
        import asyncpg

        from resourceloop.contrib.asyncpg import terminate_now

        terminate_now([d for d in drivers if isinstance(d, asyncpg.Connection)])
    sync_engine.dispose(close=False)
