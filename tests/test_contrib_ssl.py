"""Tests for what the contrib templates build once for all loops: their SSL contexts.

Each template makes its loop-independent, costly objects (an ``ssl.SSLContext`` that loads a
CA store) once and only the loop-bound client per loop; a context the user passes is used as
given, and a forked child keeps the parent's.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from typing import Any

import pytest

from resourceloop import ResourceTemplate
from resourceloop.contrib._template import BuiltOnce
from tests._fork import fork_warning, in_child, needs_fork
from tests.servers import require


def _pool_context(http_client: Any) -> ssl.SSLContext:
    """The context an httpx/httpx2 client's connection pool opens its TLS connections with."""
    context: ssl.SSLContext = http_client._transport._pool._ssl_context
    return context


def _httpx_template(**kwargs: Any) -> ResourceTemplate[Any]:
    require("httpx")
    from resourceloop.contrib.httpx import async_client_template

    return async_client_template(**kwargs)


def _openai_template(**kwargs: Any) -> ResourceTemplate[Any]:
    require("openai")
    from resourceloop.contrib.openai import async_openai_template

    return async_openai_template(api_key="test", http_client_kwargs=kwargs)


def _anthropic_template(**kwargs: Any) -> ResourceTemplate[Any]:
    require("anthropic")
    from resourceloop.contrib.anthropic import async_anthropic_template

    return async_anthropic_template(api_key="test", http_client_kwargs=kwargs)


def _http_client(resource: Any) -> Any:
    """The httpx client under a template's resource (the SDKs keep theirs as ``_client``)."""
    return getattr(resource, "_client", resource)


MAKERS = {"httpx": _httpx_template, "openai": _openai_template, "anthropic": _anthropic_template}


def _contexts(template: ResourceTemplate[Any], loops: int) -> list[ssl.SSLContext]:
    """The pool context of the client each of ``loops`` ``asyncio.run`` loops got."""
    seen: list[ssl.SSLContext] = []

    async def main() -> None:
        seen.append(_pool_context(_http_client(await template.acquire())))

    for _ in range(loops):
        asyncio.run(main())
    return seen


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_one_context_for_every_loop(kind: str) -> None:
    """Three loops, three clients, one ``SSLContext`` that verifies like the library's own."""
    contexts = _contexts(MAKERS[kind](), 3)
    assert len({id(c) for c in contexts}) == 1
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED
    assert contexts[0].check_hostname is True


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_given_context_is_used_as_given(kind: str) -> None:
    """``verify=context`` reaches every loop's pool as that very object."""
    given = ssl.create_default_context()
    assert _contexts(MAKERS[kind](verify=given), 2) == [given, given]


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_verify_false_is_shared_too(kind: str) -> None:
    """``verify=False`` makes one unverified context, as the library would, shared."""
    contexts = _contexts(MAKERS[kind](verify=False), 2)
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_NONE


@needs_fork
@fork_warning
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_fork_child_keeps_the_parents_context(kind: str) -> None:
    """A child forked after the first client uses the parent's context; it builds none."""
    template = MAKERS[kind]()
    parent = _contexts(template, 1)[0]

    def child() -> dict[str, Any]:
        return {"same": _contexts(template, 1)[0] is parent, "pid": os.getpid()}

    report = in_child(child)
    assert report["same"] is True
    assert report["pid"] != os.getpid()
    assert _contexts(template, 1)[0] is parent


def test_built_once_first_stored_wins() -> None:
    """Two threads that build at once get the same object: the first one stored."""
    builds: list[object] = []
    both_building = threading.Barrier(2)

    def build() -> object:
        made = object()
        builds.append(made)
        both_building.wait(30)
        return made

    once = BuiltOnce(build)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(once.get())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(builds) == 2
    assert got[0] is got[1]
    assert got[0] in builds
    assert once.get() is got[0]


class _FakePool:
    """What ``asyncpg.create_pool`` returned, with the arguments it was given."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs

    async def close(self) -> None:
        pass


def test_asyncpg_ssl_true_becomes_one_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ssl=True``: one default context for every loop's pool; a given context stays as is."""
    asyncpg = require("asyncpg")
    from resourceloop.contrib.asyncpg import pool_template

    async def create_pool(dsn: str, **kwargs: Any) -> _FakePool:
        return _FakePool(kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", create_pool)
    given = ssl.create_default_context()
    for ssl_arg in (True, given, "require"):
        template = pool_template("postgresql://u@h/d", ssl=ssl_arg, min_size=1)
        seen: list[Any] = []

        async def main(template: ResourceTemplate[Any] = template, seen: list[Any] = seen) -> None:
            seen.append((await template.acquire()).kwargs["ssl"])

        asyncio.run(main())
        asyncio.run(main())
        if ssl_arg is True:
            assert isinstance(seen[0], ssl.SSLContext)
            assert seen[0] is seen[1]
            assert seen[0].verify_mode == ssl.CERT_REQUIRED
        else:
            assert seen == [ssl_arg, ssl_arg]


def test_sqlalchemy_asyncpg_ssl_true_becomes_one_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """``connect_args={"ssl": True}`` with asyncpg: one context for every loop's engine."""
    require("sqlalchemy.ext.asyncio")
    require("asyncpg")
    from resourceloop.contrib import sqlalchemy as rl_sqlalchemy

    made: list[dict[str, Any]] = []
    from sqlalchemy.ext.asyncio import create_async_engine as real

    def create_async_engine(url: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real(url, **kwargs)

    monkeypatch.setattr(rl_sqlalchemy, "create_async_engine", create_async_engine)
    template = rl_sqlalchemy.async_engine_template(
        "postgresql+asyncpg://u@h/d", connect_args={"ssl": True, "timeout": 5}
    )

    async def main() -> None:
        await template.acquire()

    asyncio.run(main())
    asyncio.run(main())
    first, second = (kwargs["connect_args"] for kwargs in made)
    assert isinstance(first["ssl"], ssl.SSLContext)
    assert first["ssl"] is second["ssl"]
    assert first["timeout"] == second["timeout"] == 5
