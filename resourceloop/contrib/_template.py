"""How every contrib module builds its template."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from resourceloop import ResourceTemplate

__all__ = ["client_template"]

R = TypeVar("R")


def client_template(
    open_client: Callable[[], Awaitable[R]],
    release: Callable[[R], Awaitable[Any]],
    force_release: Callable[[R], Any],
    *,
    name: str,
    lazy: bool,
) -> ResourceTemplate[R]:
    """``ResourceTemplate(open_client, release, ...)``, with ``open_client`` named after it.

    A failing creation's traceback and log records show the factory's name; with the
    template's name in it (``open_session[riot-http]``) they say which template failed.
    """
    open_client.__qualname__ = open_client.__name__ = f"{open_client.__name__}[{name}]"
    return ResourceTemplate(
        open_client, release, name=name, lazy=lazy, force_release_func=force_release
    )
