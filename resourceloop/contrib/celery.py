"""Celery workers: async task bodies on one portal per worker process, released when it ends.

::

    from celery import Celery

    from resourceloop.contrib.celery import async_task, install
    from resourceloop.contrib.sqlalchemy import async_engine_template

    app = Celery("proj", broker="redis://127.0.0.1:6379/0")
    install()  # once, where the app is made
    engines = async_engine_template("postgresql+asyncpg://app@db/app")


    @app.task
    @async_task(templates=[engines])
    async def count_users() -> int:
        async with (await engines.acquire()).connect() as conn:
            return (await conn.execute(sqlalchemy.text("select count(*) from users"))).scalar()

How it works, with the prefork pool (the default): each worker child runs the async bodies of
its tasks on one portal (``resourceloop.sync.portal()``, a loop in a daemon thread), so a
connection pool made by the first task is reused by the next ones in that child, for as long
as the child lives. A child ends when ``--max-tasks-per-child`` recycles it, when the worker
shuts down (SIGTERM: a warm shutdown), or with the worker: billiard then calls ``os._exit``
without ``atexit`` or ``multiprocessing`` finalizers, so :func:`install` connects Celery's
``worker_process_shutdown`` signal to :func:`resourceloop.sync.release_at_process_end`, which
closes the portal and releases every resource gracefully on its loop before the child exits.
A child killed with SIGKILL releases nothing: the servers see its connections drop.

``worker_process_init`` (a new child) needs nothing: the child forgets the parent's portals
and resources after the fork by itself, and starts its own portal at its first task.

With the solo or threads pool, the worker's process ends normally: interpreter exit releases,
and the signal handlers are harmless.

Celery is an optional dependency: ``pip install celery``; this module imports it,
``import resourceloop`` does not. It uses only the public API of ``resourceloop``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from celery import signals

from resourceloop import ResourceManager, ResourceTemplate
from resourceloop.sync import Portal, async_to_sync, release_at_process_end

__all__ = ["async_task", "install", "uninstall"]

P = ParamSpec("P")
R = TypeVar("R")

_UID = "resourceloop.contrib.celery"


def _on_worker_process_shutdown(**_kwargs: Any) -> None:
    release_at_process_end()


def install() -> None:
    """Connect resourceloop to Celery's worker process signals; idempotent.

    Connects ``worker_process_shutdown``, sent in a prefork child just before it ends with
    ``os._exit``, to :func:`resourceloop.sync.release_at_process_end`. Call it once where the
    Celery app is made (the module the worker imports), from any thread.

    .. versionadded:: 0.1.0
    """
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid=_UID
    )


def uninstall() -> None:
    """Disconnect what :func:`install` connected; idempotent. Safe from any thread.

    .. versionadded:: 0.1.0
    """
    signals.worker_process_shutdown.disconnect(dispatch_uid=_UID)


@overload
def async_task(
    func: Callable[P, Coroutine[Any, Any, R]],
    *,
    templates: Iterable[ResourceTemplate[Any]] | None = None,
    portal: bool | Portal = True,
) -> Callable[P, R]: ...
@overload
def async_task(
    func: None = None,
    *,
    templates: Iterable[ResourceTemplate[Any]] | None = None,
    portal: bool | Portal = True,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, R]]: ...
def async_task(
    func: Callable[..., Coroutine[Any, Any, Any]] | None = None,
    *,
    templates: Iterable[ResourceTemplate[Any]] | None = None,
    portal: bool | Portal = True,
) -> Any:
    """Turn an ``async def`` task body into the blocking function ``@app.task`` expects.

    Each call runs the body inside ``ResourceManager(templates=templates)`` (so only those
    templates are acquired up front; with ``templates=None``, every non-lazy one), on the
    worker process's portal: resources and their connections stay for the child's next tasks
    and are released when the child ends (see :func:`install`). With ``portal=False`` each
    call runs on a fresh loop instead, closed (and its resources released) when the call
    returns: no connection is reused, none outlives the task.

    Usable as ``@async_task`` or ``@async_task(templates=[...])``, under ``@app.task``.

    Args:
        func: The task body, a coroutine function.
        templates: The templates to acquire on entry (see ``ResourceManager``).
        portal: ``True`` (the process's default portal), ``False`` (a loop per call) or a
            ``resourceloop.sync.Portal``.

    Returns:
        A blocking function with ``func``'s name, docstring and parameters.

    Raises:
        TypeError: ``func`` is not a coroutine function, or ``templates`` is not an iterable
            of ``ResourceTemplate``.

    The returned function may be called from any thread that runs no event loop (a Celery
    worker's task thread).

    .. versionadded:: 0.1.0
    """
    chosen = ResourceManager(templates=templates).templates  # checked now, read once
    if func is None:
        return functools.partial(async_task, templates=chosen, portal=portal)
    managed = ResourceManager.as_decorator(func, templates=chosen)
    return async_to_sync(managed, portal=portal)
