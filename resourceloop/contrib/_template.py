"""How every contrib module builds its template, and what it builds once for all its loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from resourceloop import ResourceTemplate

__all__ = ["BuiltOnce", "client_template"]

R = TypeVar("R")
T = TypeVar("T")


def client_template(
    open_client: Callable[[], R] | Callable[[], Awaitable[R]],
    release: Callable[[R], Awaitable[Any]],
    force_release: Callable[[R], Any],
    *,
    name: str,
    lazy: bool,
    awaitable_client: bool = False,
) -> ResourceTemplate[R]:
    """``ResourceTemplate(open_client, release, ...)``, with ``open_client`` named after it.

    ``open_client`` is synchronous wherever making the client needs no ``await``: the template
    then calls it right in ``acquire()``, on the loop, where an ``async def`` would cost a task
    and a trip through the loop on every first acquisition.

    ``awaitable_client``: the client ``open_client`` returns is awaitable itself (redis-py's
    ``Redis``), and is the resource as it is: not awaited, so that it costs no task either.

    A failing creation's traceback and log records show the factory's name; with the
    template's name in it (``open_session[riot-http]``) they say which template failed.
    """
    open_client.__qualname__ = open_client.__name__ = f"{open_client.__name__}[{name}]"
    template = ResourceTemplate(
        open_client, release, name=name, lazy=lazy, force_release_func=force_release
    )
    if awaitable_client:
        template._returns_resource = True
    return template


class BuiltOnce(Generic[T]):
    """A loop-independent value (an ``ssl.SSLContext``) built on first use, then shared.

    No lock: two threads that ask at once may both build it, and ``dict.setdefault`` (atomic)
    keeps the first one stored and hands that one to both; the other is dropped. That costs
    one extra build at most and can never deadlock. It also decides fork: a child keeps the
    parent's value (an ``SSLContext`` holds settings and certificates, no socket and no thread,
    and OpenSSL contexts stay valid in a forked child), and there is no lock a fork could leave
    held.
    """

    __slots__ = ("_build", "_cell")

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._cell: dict[int, T] = {}  # at most one entry, key 0: the value

    def get(self) -> T:
        try:
            return self._cell[0]
        except KeyError:
            return self._cell.setdefault(0, self._build())
