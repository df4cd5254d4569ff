"""The httpx, redis, asyncpg and SQLAlchemy templates against real servers, on every path.

Each client makes real connections (an aiohttp server in this process for httpx, redis-server
and PostgreSQL on 127.0.0.1 for the others, see ``tests/servers.py``), then its loop ends in
one of the ways the library promises to handle. Three witnesses must agree that everything
was closed: the server's own view (``CLIENT LIST``, ``pg_stat_activity``, or this process's
sockets connected to the HTTP server), this process's file descriptors (``/proc/self/fd``),
and the warnings (none from the client library or asyncio, on any path). Where the claim is
"closed for real without the loop", the cyclic garbage collector is disabled until the counts
are taken, so it cannot be what closed them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_manager
from resourceloop.warnings import (
    ForcedReleaseWarning,
    ReleaseTimeoutWarning,
    ResourceLoopWarning,
    UngracefulLoopWarning,
)
from tests._warnings import Warned, record_text
from tests.servers import postgres_connections, redis_connections, require, wait_for

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc"
)

_tags = itertools.count()


def count_fds() -> int:
    """This process's open file descriptors."""
    return len(list(Path("/proc/self/fd").iterdir()))


@dataclass
class Client:
    """How one client library is made, used and counted in these tests."""

    kind: str
    template: Callable[[str], ResourceTemplate[Any]]  # tag -> template
    use: Callable[[Any], Awaitable[None]]  # opens at least one connection, leaves it pooled
    connections: Callable[[str], int]  # tag -> connections the server sees
    fds: Callable[[], int]  # this process's descriptors, minus servers living in it
    pins_its_loop_when_idle: bool = False  # holds its loop even with no connection open


def _httpx(request: pytest.FixtureRequest) -> Client:
    require("httpx")
    from resourceloop.contrib.httpx import async_client_template
    from tests.aiohttp_server import client_connections, count_fds

    server = request.getfixturevalue("http_server")

    async def use(client: Any) -> None:
        responses = await asyncio.gather(*(client.get(server.url + "/") for _ in range(3)))
        assert [r.json() for r in responses] == [{"hello": "world"}] * 3

    return Client(
        "httpx",
        lambda tag: async_client_template(name=f"httpx-{tag}", timeout=30),
        use,
        lambda tag: client_connections(server),
        lambda: count_fds(server),
    )


def _redis(request: pytest.FixtureRequest) -> Client:
    require("redis")
    from resourceloop.contrib.redis import redis_template

    url = request.getfixturevalue("redis_url")

    async def use(client: Any) -> None:
        # Two commands at once need two connections from the pool.
        assert list(await asyncio.gather(client.ping(), client.echo("x"))) == [True, b"x"]

    return Client(
        "redis",
        lambda tag: redis_template(url, name=f"redis-{tag}", client_name=tag),
        use,
        lambda tag: redis_connections(url, tag),
        count_fds,
    )


def _asyncpg(request: pytest.FixtureRequest) -> Client:
    require("asyncpg")
    from resourceloop.contrib.asyncpg import pool_template

    dsn = request.getfixturevalue("postgres_dsn")

    async def use(pool: Any) -> None:
        async def one() -> int:
            async with pool.acquire() as connection:
                return int(await connection.fetchval("SELECT 1"))

        assert list(await asyncio.gather(one(), one())) == [1, 1]

    return Client(
        "asyncpg",
        lambda tag: pool_template(
            dsn,
            name=f"asyncpg-{tag}",
            min_size=2,
            max_size=3,
            server_settings={"application_name": tag},
        ),
        use,
        lambda tag: postgres_connections(dsn, tag),
        count_fds,
        pins_its_loop_when_idle=True,
    )


def _sqlalchemy(request: pytest.FixtureRequest) -> Client:
    require("sqlalchemy.ext.asyncio")
    require("asyncpg")
    from sqlalchemy import text

    from resourceloop.contrib.sqlalchemy import async_engine_template

    dsn = request.getfixturevalue("postgres_dsn")
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def use(engine: Any) -> None:
        async def one() -> int:
            async with engine.connect() as connection:
                return int((await connection.execute(text("SELECT 1"))).scalar_one())

        assert list(await asyncio.gather(one(), one())) == [1, 1]

    return Client(
        "sqlalchemy",
        lambda tag: async_engine_template(
            url,
            name=f"sqlalchemy-{tag}",
            pool_size=3,
            connect_args={"server_settings": {"application_name": tag}},
        ),
        use,
        lambda tag: postgres_connections(dsn, tag),
        count_fds,
    )


CLIENTS = {"httpx": _httpx, "redis": _redis, "asyncpg": _asyncpg, "sqlalchemy": _sqlalchemy}


@pytest.fixture(scope="module")
def http_server() -> Iterator[Any]:
    require("aiohttp")
    from tests.aiohttp_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    made = CLIENTS[request.param](request)
    _warm_up(made)
    return made


def _warm_up(client: Client) -> None:
    """One full cycle first: imports, caches and lazily opened files are not what we count."""
    template = client.template(f"warmup{os.getpid()}x{next(_tags)}")

    async def main() -> None:
        await client.use(await template.acquire())
        await template.release()  # explicitly: the close hook may be disabled here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceLoopWarning)
        asyncio.run(main())
    gc.collect()
    _clean_runtime()


def _clean_runtime() -> None:
    from resourceloop import _runtime

    _runtime._reset_for_tests()


@pytest.fixture
def tag() -> str:
    """A client name no other test, and no other run on the same servers, uses.

    CI runs several Pythons at once against one redis-server and one PostgreSQL; the counts
    are filtered by this name, so it carries the process id.
    """
    return f"rltest{os.getpid()}x{next(_tags)}"


@contextmanager
def witnessed(caplog: pytest.LogCaptureFixture) -> Iterator[list[Warned]]:
    """Record every warning (any thread) and fail on an error logged by asyncio.

    The garbage collector runs at the end, so warnings from finalizers are caught too. Warnings
    are recorded as text (``record_text``), so that asyncio's "unclosed event loop" warning does
    not resurrect the loop it is about (its ``source``).
    """
    with caplog.at_level(logging.ERROR, logger="asyncio"), record_text() as caught:
        yield caught
        gc.enable()
        for _ in range(3):
            gc.collect()
    errors = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert errors == []


def foreign(caught: list[Warned]) -> list[str]:
    """Warnings that are not resourceloop's own: the client library's or asyncio's."""
    return [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not issubclass(w.category, ResourceLoopWarning)
    ]


def ours(caught: list[Warned]) -> list[type[Warning]]:
    return [w.category for w in caught if issubclass(w.category, ResourceLoopWarning)]


def counts() -> tuple[int, int]:
    snap = resourceloop.stats()
    return snap.graceful_releases, snap.forced_releases


def _assert_all_gone(client: Client, tag: str, fds: int) -> None:
    assert client.fds() == fds
    wait_for(lambda: client.connections(tag), 0, f"{client.kind} connections left on the server")
    assert resourceloop.stats().resources_live == {}


# -- graceful paths ----------------------------------------------------------------------------


def test_close_hook(client: Client, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    """``asyncio.run`` with no manager: the close hook releases the client on its loop."""
    template = client.template(tag)
    fds = client.fds()

    async def main() -> None:
        await client.use(await template.acquire())
        assert client.connections(tag) >= 1

    with witnessed(caplog) as caught:
        asyncio.run(main())
        _assert_all_gone(client, tag, fds)
    assert caught == []
    assert counts() == (1, 0)


def test_manager(client: Client, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    """Leaving ``resource_manager()`` releases the client on its loop, sockets closed there."""
    template = client.template(tag)
    fds = client.fds()

    async def main() -> None:
        async with resource_manager():
            await client.use(await template.acquire())
            assert client.connections(tag) >= 1
        assert resourceloop.stats().resources_live == {}

    with witnessed(caplog) as caught:
        asyncio.run(main())
        _assert_all_gone(client, tag, fds)
    assert caught == []
    assert counts() == (1, 0)


def test_abandoned_thread_then_reap(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread that ends with its loop unclosed: ``reap()`` releases on that idle loop."""
    template = client.template(tag)
    fds = client.fds()
    loops: list[asyncio.AbstractEventLoop] = []

    def owner() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(client.use(loop.run_until_complete(template.acquire())))

    with witnessed(caplog) as caught:
        thread = threading.Thread(target=owner)
        thread.start()
        thread.join()
        assert client.connections(tag) >= 1
        resourceloop.reap()
        assert counts() == (1, 0)
        loops.pop().close()  # the test owns the loop; the reaper never closes it
        _assert_all_gone(client, tag, fds)
    assert caught == []


# -- forced paths: closed for real, without the loop and without the garbage collector ---------


@pytest.mark.usefixtures("hook_disabled", "gc_disabled")
def test_closed_without_hook_then_reap(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Closed with the hook off: ``reap()`` closes every socket, quietly, GC disabled."""
    template = client.template(tag)
    fds = client.fds()

    async def main() -> None:
        await client.use(await template.acquire())

    with witnessed(caplog) as caught:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        assert client.connections(tag) >= 1  # nothing released them yet
        resourceloop.reap()
        assert counts() == (0, 1)
        _assert_all_gone(client, tag, fds)
        del loop
    assert foreign(caught) == []
    assert ours(caught) == [UngracefulLoopWarning, ForcedReleaseWarning]
    assert resourceloop.stats().release_failures == 0


@pytest.mark.usefixtures("gc_disabled")
def test_timed_out_release(client: Client, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    """A graceful release that hangs: past ``release_timeout`` the forced one closes all.

    asyncpg hangs for real (``Pool.close()`` waits for a connection still acquired); for the
    others the release function waits forever, with the contrib force release behind it.
    """
    resourceloop.configure(release_timeout=0.05)
    contrib = client.template(tag)
    held: list[Any] = []
    if client.kind == "asyncpg":
        template = contrib
    else:
        never = asyncio.Event

        async def stuck(resource: Any) -> None:
            await never().wait()

        template = ResourceTemplate(
            contrib.acquire_func,
            stuck,
            name=contrib.name,
            force_release_func=contrib.force_release_func,
        )
        del contrib  # else the manager would acquire (and release) it too
    fds = client.fds()

    async def main() -> None:
        inside = client.fds()  # with this loop's own descriptors
        async with resource_manager():
            resource = await template.acquire()
            await client.use(resource)
            if client.kind == "asyncpg":
                held.append(await resource.acquire())  # never released: close() waits
        # The forced release ran on this running loop: its transports finish closing in the
        # next iterations.
        for _ in range(3):
            await asyncio.sleep(0)
        assert client.fds() == inside

    with witnessed(caplog) as caught:
        asyncio.run(main())
        _assert_all_gone(client, tag, fds)
        held.clear()
    assert foreign(caught) == []
    assert ours(caught) == [ReleaseTimeoutWarning]
    assert counts() == (0, 1)


def test_collected_loop(client: Client, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    """A loop dropped unclosed and collected: the next ``reap()`` forces the release, quietly.

    A client with an open connection holds its loop (through the transport), so its loop
    cannot be collected while it is tracked; a client acquired but not yet connected holds
    none (asyncpg's pool always does: it connects ``min_size`` connections at creation).
    """
    template = client.template(tag)
    fds = client.fds()
    with witnessed(caplog) as caught:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(template.acquire())
        probe = weakref.ref(loop)
        del loop
        for _ in range(3):
            gc.collect()
        if client.pins_its_loop_when_idle:
            pinned = probe()
            assert pinned is not None
            pinned.close()  # the close hook releases it gracefully
            del pinned
            assert counts() == (1, 0)
        else:
            assert probe() is None
            resourceloop.reap()
            assert counts() == (0, 1)
        _assert_all_gone(client, tag, fds)
    if client.pins_its_loop_when_idle:
        assert caught == []
    else:
        assert [m.split(" <")[0] for m in foreign(caught)] == [
            "ResourceWarning: unclosed event loop"
        ]
        assert ours(caught) == [ForcedReleaseWarning]


@pytest.mark.usefixtures("hook_disabled", "gc_disabled")
def test_many_closed_loops(client: Client, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    """Twenty loops closed without the hook, one ``reap()``: twenty forced, nothing left."""
    template = client.template(tag)
    fds = client.fds()

    async def main() -> None:
        await client.use(await template.acquire())

    with witnessed(caplog) as caught:
        loops = []
        for _ in range(20):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(main())
            loop.close()
            loops.append(loop)
        assert client.connections(tag) >= 20
        resourceloop.reap()
        assert counts() == (0, 20)
        _assert_all_gone(client, tag, fds)
        del loops, loop
    assert foreign(caught) == []
    assert ours(caught).count(ForcedReleaseWarning) == 20


# -- the force release itself, called directly, in each state of the loop ----------------------


async def _make(client: Client, tag: str) -> tuple[Any, Callable[[Any], object]]:
    """A client made by the template's own functions but not tracked by resourceloop."""
    template = client.template(tag)
    force = template.force_release_func
    assert force is not None
    resource = template.acquire_func()
    if asyncio.iscoroutine(resource):
        resource = await resource
    await client.use(resource)
    return resource, force


@pytest.mark.usefixtures("gc_disabled")
def test_force_release_while_the_loop_runs_in_another_thread(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """From another thread, the force release is done on the loop's own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="owner")
    thread.start()
    try:
        with witnessed(caplog) as caught:
            with_loop = client.fds()
            resource, force = asyncio.run_coroutine_threadsafe(_make(client, tag), loop).result(60)
            assert client.connections(tag) >= 1
            force(resource)
            # Round trips through the loop: the close ran there, then the transports closed.
            for _ in range(3):
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(60)
            assert client.fds() == with_loop
            wait_for(lambda: client.connections(tag), 0, "connections left")
            force(resource)  # twice: nothing more to do
            del resource
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()
    assert caught == []


@pytest.mark.usefixtures("gc_disabled")
def test_force_release_on_an_idle_loop(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An open loop nobody runs: the force release runs it once to finish closing."""
    with witnessed(caplog) as caught:
        loop = asyncio.new_event_loop()
        with_loop = client.fds()
        resource, force = loop.run_until_complete(_make(client, tag))
        force(resource)
        assert client.fds() == with_loop
        wait_for(lambda: client.connections(tag), 0, "connections left")
        force(resource)
        loop.close()
        del resource, loop
    assert caught == []


@pytest.mark.usefixtures("gc_disabled")
def test_force_release_on_a_closed_loop(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed loop: the sockets are closed here, and twice is a no-op."""
    fds = client.fds()
    with witnessed(caplog) as caught:
        loop = asyncio.new_event_loop()
        resource, force = loop.run_until_complete(_make(client, tag))
        loop.close()
        assert client.connections(tag) >= 1
        force(resource)
        assert client.fds() == fds
        wait_for(lambda: client.connections(tag), 0, "connections left")
        force(resource)
        del resource, loop
    assert caught == []


# -- what the modules promise without a server -------------------------------------------------


def test_import_resourceloop_imports_no_client_library() -> None:
    """``import resourceloop`` (and its helpers) imports none of the optional libraries."""
    import subprocess
    import sys

    code = (
        "import sys, resourceloop, resourceloop.queue, resourceloop.sync, resourceloop.contrib\n"
        "loaded = {'aiohttp', 'httpx', 'redis', 'asyncpg', 'sqlalchemy'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_contrib_module_imports_only_its_library() -> None:
    """``resourceloop.contrib.httpx`` needs httpx, not redis or asyncpg, and so on."""
    import subprocess
    import sys

    own = {
        "httpx": {"httpx"},
        "redis": {"redis"},
        "asyncpg": {"asyncpg"},
        "sqlalchemy": {"sqlalchemy"},
    }
    for module, allowed in own.items():
        others = sorted({"aiohttp", *own} - allowed)
        code = (
            f"import sys, resourceloop.contrib.{module}\n"
            f"loaded = set({others!r}) & set(sys.modules)\n"
            "assert not loaded, loaded\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


def test_templates_have_the_documented_shape() -> None:
    """Default names, ``lazy``, and each module's force release behind its template."""
    from resourceloop.contrib import asyncpg as rl_asyncpg
    from resourceloop.contrib import httpx as rl_httpx
    from resourceloop.contrib import redis as rl_redis
    from resourceloop.contrib import sqlalchemy as rl_sqlalchemy

    made: list[tuple[ResourceTemplate[Any], str, Callable[[Any], None]]] = [
        (rl_httpx.async_client_template(), "httpx.AsyncClient", rl_httpx.close_client_now),
        (rl_redis.redis_template(), "redis.asyncio.Redis", rl_redis.close_redis_now),
        (rl_asyncpg.pool_template(), "asyncpg.Pool", rl_asyncpg.terminate_now),
        (
            rl_sqlalchemy.async_engine_template("postgresql+asyncpg://u@h/d"),
            "sqlalchemy.AsyncEngine",
            rl_sqlalchemy.close_engine_now,
        ),
    ]
    for template, name, force in made:
        assert template.name == name
        assert template.lazy is False
        assert template.force_release_func is force
    assert rl_httpx.async_client_template(name="n", lazy=True).lazy is True
    for module in (rl_httpx, rl_redis, rl_asyncpg, rl_sqlalchemy):
        constant = next(v for k, v in vars(module).items() if k.startswith("SUPPORTED_"))
        assert constant.startswith(">="), constant


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("redis://127.0.0.1:6390/2", {"client_name": "x", "max_connections": 7}),
        ("rediss://u:p@127.0.0.1:6390/0?socket_timeout=2.5", {"decode_responses": True}),
        ("unix:///tmp/redis.sock?db=3", {"single_connection_client": True}),
    ],
)
def test_redis_template_makes_the_client_from_url_makes(url: str, kwargs: dict[str, Any]) -> None:
    """The URL parsed once, each loop's client is configured as ``Redis.from_url``'s, and it
    is the resource as made (a ``Redis`` is awaitable: the template does not await it)."""
    require("redis")
    import redis.asyncio

    from resourceloop.contrib.redis import redis_template

    template = redis_template(url, name="redis-config", **kwargs)

    def config(client: Any) -> tuple[Any, ...]:
        pool = client.connection_pool
        simple = (str, int, float, bool, type(None), type)
        options = {k: v for k, v in pool.connection_kwargs.items() if isinstance(v, simple)}
        return (
            type(pool),
            pool.connection_class,
            pool.max_connections,
            options,
            sorted(pool.connection_kwargs),
            client.single_connection_client,
            client.auto_close_connection_pool,
        )

    async def main() -> None:
        client = await template.acquire()
        assert type(client) is redis.asyncio.Redis
        assert client.connection is None  # not awaited: nothing connected yet
        expected = redis.asyncio.Redis.from_url(url, **kwargs)
        try:
            assert config(client) == config(expected)
        finally:
            await expected.aclose()

    asyncio.run(main())
    with pytest.raises(ValueError, match="scheme"):
        redis_template("http://127.0.0.1:6379/0")


def test_templates_refuse_arguments_bound_to_one_loop() -> None:
    """A transport, pool or loop given once would be shared by every loop: refused at once."""
    from resourceloop.contrib.asyncpg import pool_template
    from resourceloop.contrib.httpx import async_client_template
    from resourceloop.contrib.redis import redis_template
    from resourceloop.contrib.sqlalchemy import async_engine_template

    with pytest.raises(TypeError, match="transport"):
        async_client_template(transport=object())
    with pytest.raises(TypeError, match="mounts"):
        async_client_template(mounts={})
    with pytest.raises(TypeError, match="connection_pool"):
        redis_template(connection_pool=object())
    with pytest.raises(TypeError, match="url must be a str"):
        redis_template(6379)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loop"):
        pool_template("postgresql://x", loop=object())
    with pytest.raises(TypeError, match="dsn must be a str"):
        pool_template(5432)  # type: ignore[arg-type]
    for bound in ("pool", "creator", "async_creator"):
        kwargs: dict[str, Any] = {bound: object()}
        with pytest.raises(TypeError, match=bound):
            async_engine_template("postgresql+asyncpg://u@h/d", **kwargs)
    with pytest.raises(TypeError, match="url must be a str"):
        async_engine_template(None)  # type: ignore[arg-type]


def test_supported_ranges_are_the_extras() -> None:
    """Each module's ``SUPPORTED_*`` range is what its extra in pyproject.toml asks for."""
    import importlib
    import re

    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    for module, constant, requirement in [
        ("aiohttp", "SUPPORTED_AIOHTTP", "aiohttp"),
        ("httpx", "SUPPORTED_HTTPX", "httpx"),
        ("redis", "SUPPORTED_REDIS", "redis"),
        ("asyncpg", "SUPPORTED_ASYNCPG", "asyncpg"),
        ("sqlalchemy", "SUPPORTED_SQLALCHEMY", r"sqlalchemy\[asyncio\]"),
    ]:
        supported = getattr(importlib.import_module(f"resourceloop.contrib.{module}"), constant)
        extra = re.search(rf'^{module} = \["{requirement}([^"]*)"\]$', pyproject, re.MULTILINE)
        assert extra is not None, module
        assert extra.group(1) == supported, module


@pytest.mark.usefixtures("gc_disabled")
def test_force_release_on_a_closed_uvloop(
    client: Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On uvloop, ``loop.close()`` closes the transports itself; the force release is quiet.

    uvloop warns "unclosed resource" from ``loop.close()`` for each open transport (only a
    graceful release avoids that), and its transports never report ``is_closing()`` after
    that, so asyncio's ``StreamWriter.__del__`` (redis-py's streams) adds "loop is closed".
    Nothing else may warn, and no socket may be left.
    """
    from tests._loops import HAS_UVLOOP, new_uvloop

    if not HAS_UVLOOP:
        pytest.skip("uvloop is not installed")
    run = new_uvloop()
    run.run_until_complete(asyncio.sleep(0))  # uvloop's first loop opens a process-wide pipe
    run.close()
    fds = client.fds()
    with witnessed(caplog) as caught:
        loop = new_uvloop()
        resource, force = loop.run_until_complete(_make(client, tag))
        loop.close()
        at_close = foreign(caught)
        force(resource)
        assert client.fds() == fds
        wait_for(lambda: client.connections(tag), 0, "connections left")
        del resource, loop
    assert at_close
    assert all(m.startswith("ResourceWarning: unclosed resource") for m in at_close)
    later = foreign(caught)[len(at_close) :]
    allowed = ["ResourceWarning: loop is closed"] if client.kind == "redis" else []
    assert set(later) <= set(allowed), later


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """An HTTPS aiohttp server with a throwaway certificate, and a context trusting it."""
    require("aiohttp")
    from tests.aiohttp_server import running_server, self_signed_tls

    server_context, client_context = self_signed_tls(tmp_path_factory.mktemp("tls"))
    with running_server(server_context) as server:
        yield server, client_context


@pytest.mark.usefixtures("hook_disabled", "gc_disabled")
def test_httpx_over_tls_closed_without_hook_then_reap(
    https_server: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """HTTPS (anyio's TLS stream over the socket stream): the sockets close for real too."""
    require("httpx")
    from resourceloop.contrib.httpx import async_client_template
    from tests.aiohttp_server import client_connections
    from tests.aiohttp_server import count_fds as fds_without_server

    server, context = https_server
    template = async_client_template(name="httpx-tls", verify=context)

    async def main() -> None:
        client = await template.acquire()
        responses = await asyncio.gather(*(client.get(server.url + "/") for _ in range(3)))
        assert [r.json() for r in responses] == [{"hello": "world"}] * 3

    with warnings.catch_warnings():  # the first use loads certificates and caches: not counted
        warnings.simplefilter("ignore", ResourceLoopWarning)
        asyncio.run(main())
        resourceloop.reap()
    fds = fds_without_server(server)
    with witnessed(caplog) as caught:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        assert client_connections(server) >= 1
        resourceloop.reap()
        assert fds_without_server(server) == fds
        assert client_connections(server) == 0
        del loop
    assert foreign(caught) == []
    assert ours(caught) == [UngracefulLoopWarning, ForcedReleaseWarning]
