"""Tests for the documentation's code: every recipe under ``docs/recipes_src/`` runs here.

The Recipes and Getting started pages include these files verbatim (``pymdownx.snippets``), so
a recipe that stops working fails this module. Recipes for packages that are installed run for
real against an aiohttp server in a subprocess on 127.0.0.1 (so ``/proc/self/fd`` counts only
the client's sockets). Recipes for packages that are not installed in the test environment
(httpx, redis, asyncpg, SQLAlchemy, Django, Celery, Dramatiq) run twice: for real when the
package is importable (skipped otherwise), and always against a small fake of that package's
API, so the resourceloop side of the recipe (one client per loop, used only on its loop,
released exactly once, on that loop) is still exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import types
import warnings
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

import resourceloop

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RECIPES = DOCS / "recipes_src"

# -- a real HTTP server in a subprocess ----------------------------------------------------------

_SERVER = r"""
import asyncio, sys
from aiohttp import web

async def summoner(request):
    name = request.match_info["name"]
    return web.json_response({"name": name, "puuid": f"puuid-{name}"})

async def match(request):
    match_id = request.match_info["id"]
    return web.json_response({"id": match_id, "duration": 1000 * int(match_id)})

async def anything(request):
    return web.json_response({"ok": True, "path": request.path})

async def main():
    app = web.Application()
    app.router.add_get("/summoner/{name}", summoner)
    app.router.add_get("/match/{id}", match)
    app.router.add_get("/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    """Base URL of a JSON API served by aiohttp in a child process on an ephemeral port."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert server.stdin is not None
        server.stdin.close()  # EOF: the server cleans up and exits
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:  # pragma: no cover - only when the server hangs
                server.kill()
            assert server.stdout is not None
            server.stdout.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- loading recipes -----------------------------------------------------------------------------


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import ``docs/recipes_src/<name>.py`` as a fresh module, registered for this test only."""
    return load_file(RECIPES / f"{name}.py", monkeypatch)


def load_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import the Python file ``path`` as a fresh module, registered for this test only."""
    module_name = f"_docs_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def in_threads(func: Callable[[int], Any], count: int) -> list[Any]:
    """Call ``func(i)`` for ``i`` in ``range(count)``, each in its own thread, all at once."""
    barrier = threading.Barrier(count)

    def call(i: int) -> Any:
        barrier.wait(timeout=30)
        return func(i)

    with ThreadPoolExecutor(max_workers=count) as executor:
        return list(executor.map(call, range(count)))


def assert_all_released_gracefully() -> None:
    """Every resource created in this test was released, gracefully, on its own loop."""
    resourceloop.reap()
    stats = resourceloop.stats()
    assert sum(stats.resources_live.values()) == 0, stats
    assert stats.acquisitions > 0, stats
    assert stats.graceful_releases == stats.acquisitions, stats
    assert stats.forced_releases == 0, stats
    assert stats.release_failures == 0, stats


# -- fakes of packages that are not installed in the test environment ----------------------------


class FakeClient:
    """Stands in for a library's loop-bound client: records its loop and every use of it."""

    instances: ClassVar[list[FakeClient]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.loop = asyncio.get_running_loop()  # created on the loop that will use it
        self.args = args
        self.kwargs = kwargs
        self.closed_on: list[asyncio.AbstractEventLoop] = []
        type(self).instances.append(self)

    def check(self) -> None:
        """Fail the way real clients do when used from a loop they were not created on."""
        if self.closed_on:
            raise RuntimeError("client used after it was closed")
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError("got Future attached to a different loop")

    async def aclose(self) -> None:
        """Close across a suspension, in one task, as httpx/httpcore's anyio cancel scope must."""
        task = asyncio.current_task()
        await asyncio.sleep(0)
        if asyncio.current_task() is not task:  # anyio's own check, and its message
            raise RuntimeError(
                "Attempted to exit cancel scope in a different task than it was entered in"
            )
        self.closed_on.append(asyncio.get_running_loop())


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def assert_one_client_per_loop(cls: type[FakeClient], loops: int) -> None:
    assert len(cls.instances) == loops
    assert len({id(client.loop) for client in cls.instances}) == loops
    for client in cls.instances:
        assert client.closed_on == [client.loop]  # exactly once, on its own loop


def run_on_loops(work: Callable[[], Coroutine[Any, Any, Any]], loops: int = 3) -> list[Any]:
    """Run ``work()`` twice per loop, each loop an ``asyncio.run`` in its own thread."""

    async def twice() -> list[Any]:
        return [await work(), await work()]

    return in_threads(lambda _: asyncio.run(twice()), loops)


# -- Getting started -------------------------------------------------------------------------------


def test_quickstart_fetches_from_threads_and_leaks_nothing(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Getting started example returns every body and brings the fd count back."""
    recipe = load("quickstart", monkeypatch)
    recipe.main(f"{api}/warm-up")  # first use imports and caches what aiohttp needs
    before = open_fds()
    results = recipe.main(f"{api}/hello")
    assert results == [{"ok": True, "path": "/hello"}] * 8
    assert open_fds() == before
    assert_all_released_gracefully()
    assert resourceloop.stats().acquisitions == 16  # one session per asyncio.run, 2 x 8


# -- aiohttp ---------------------------------------------------------------------------------------


def test_aiohttp_recipe_one_session_per_loop(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three threads, two calls each: three sessions, all closed gracefully, fds flat."""
    recipe = load("aiohttp_session", monkeypatch)
    run_on_loops(lambda: recipe.get_json(f"{api}/warm-up"))
    before = open_fds()
    sessions: list[Any] = []

    async def work() -> Any:
        sessions.append(await recipe.sessions.acquire())
        return await recipe.get_json(f"{api}/x")

    assert run_on_loops(work) == [[{"ok": True, "path": "/x"}] * 2] * 3
    assert open_fds() == before
    assert len({id(s) for s in sessions}) == 3
    assert all(s.closed for s in sessions)
    assert_all_released_gracefully()


def test_aiohttp_contrib_recipe_graceful(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contrib template: one session per loop, each closed on its loop, fds flat."""
    recipe = load("aiohttp_contrib", monkeypatch)
    run_on_loops(lambda: recipe.get_json(f"{api}/warm-up"))
    before = open_fds()
    assert (
        run_on_loops(lambda: recipe.get_json(f"{api}/c")) == [[{"ok": True, "path": "/c"}] * 2] * 3
    )
    assert open_fds() == before
    assert_all_released_gracefully()


def test_aiohttp_contrib_recipe_forced_still_closes_sockets(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the close hook off, the reaper's forced release still closes the sockets."""
    recipe = load("aiohttp_contrib", monkeypatch)
    asyncio.run(recipe.get_json(f"{api}/warm-up"))
    resourceloop.reap()
    before = open_fds()
    resourceloop.configure(close_hook=False)
    with pytest.warns(resourceloop.warnings.UngracefulLoopWarning):
        asyncio.run(recipe.get_json(f"{api}/f"))
    assert open_fds() > before  # the session's connection is still open: nobody closed it
    with pytest.warns(resourceloop.warnings.ForcedReleaseWarning, match="riot-api"):
        resourceloop.reap()
    assert open_fds() == before
    stats = resourceloop.stats()
    assert (stats.forced_releases, stats.release_failures) == (1, 0)


# -- httpx -----------------------------------------------------------------------------------------


def test_httpx_recipe_real(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With httpx installed, the recipe talks to the real server and closes its clients."""
    pytest.importorskip("httpx")
    recipe = load("httpx_client", monkeypatch)
    assert (
        run_on_loops(lambda: recipe.get_json(f"{api}/h")) == [[{"ok": True, "path": "/h"}] * 2] * 3
    )
    assert_all_released_gracefully()


def test_httpx_recipe_resourceloop_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a fake httpx: one AsyncClient per loop, used there only, closed there once."""

    class AsyncClient(FakeClient):
        instances: ClassVar[list[FakeClient]] = []

        async def get(self, url: str) -> Any:
            self.check()
            return types.SimpleNamespace(raise_for_status=lambda: None, json=lambda: {"url": url})

    fake_module(monkeypatch, "httpx", AsyncClient=AsyncClient)
    recipe = load("httpx_client", monkeypatch)
    assert run_on_loops(lambda: recipe.get_json("u")) == [[{"url": "u"}] * 2] * 3
    assert AsyncClient.instances[0].kwargs == {"timeout": 10.0}
    assert_one_client_per_loop(AsyncClient, 3)
    assert_all_released_gracefully()


# -- redis -----------------------------------------------------------------------------------------


def test_redis_recipe_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """With redis-py installed and RESOURCELOOP_TEST_REDIS_URL set, count visits for real."""
    pytest.importorskip("redis")
    url = os.environ.get("RESOURCELOOP_TEST_REDIS_URL")
    if not url:
        pytest.skip("set RESOURCELOOP_TEST_REDIS_URL to a disposable Redis database")
    recipe = load("redis_client", monkeypatch)
    monkeypatch.setattr(recipe, "REDIS_URL", url)
    counts = run_on_loops(lambda: recipe.count_visit("docs-test"))
    assert len({n for pair in counts for n in pair}) == 6
    assert_all_released_gracefully()


def test_redis_recipe_resourceloop_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a fake redis.asyncio: one client per loop, closed with aclose() on its loop."""
    counter = {"n": 0}
    lock = threading.Lock()

    class Redis(FakeClient):
        instances: ClassVar[list[FakeClient]] = []

        @classmethod
        def from_url(cls, url: str, **kwargs: Any) -> Redis:
            return cls(url, **kwargs)

        async def incr(self, key: str) -> int:
            self.check()
            with lock:
                counter["n"] += 1
                return counter["n"]

    fake_module(monkeypatch, "redis")
    fake_module(monkeypatch, "redis.asyncio", Redis=Redis)
    recipe = load("redis_client", monkeypatch)
    counts = run_on_loops(lambda: recipe.count_visit("home"))
    assert sorted(n for pair in counts for n in pair) == [1, 2, 3, 4, 5, 6]
    assert Redis.instances[0].args == (recipe.REDIS_URL,)
    assert Redis.instances[0].kwargs == {"decode_responses": True}
    assert_one_client_per_loop(Redis, 3)
    assert_all_released_gracefully()


# -- asyncpg ---------------------------------------------------------------------------------------


def test_asyncpg_recipe_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """With asyncpg installed and RESOURCELOOP_TEST_POSTGRES_DSN set, query for real."""
    pytest.importorskip("asyncpg")
    dsn = os.environ.get("RESOURCELOOP_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("set RESOURCELOOP_TEST_POSTGRES_DSN to a database with a `users` table")
    recipe = load("asyncpg_pool", monkeypatch)
    monkeypatch.setattr(recipe, "DSN", dsn)
    counts = run_on_loops(recipe.user_count)
    assert len({n for pair in counts for n in pair}) == 1
    assert_all_released_gracefully()


class _FakePool(FakeClient):
    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terminated = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        self.check()

        async def fetchval(query: str) -> int:
            self.check()
            return len(query)

        yield types.SimpleNamespace(fetchval=fetchval)

    async def close(self) -> None:
        await self.aclose()

    def terminate(self) -> None:
        self.terminated += 1


def _fake_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    async def create_pool(dsn: str, **kwargs: Any) -> _FakePool:
        return _FakePool(dsn, **kwargs)

    monkeypatch.setattr(_FakePool, "instances", [])
    fake_module(monkeypatch, "asyncpg", create_pool=create_pool, Pool=_FakePool)


def test_asyncpg_recipe_resourceloop_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a fake asyncpg: one pool per loop, closed with close() on its loop."""
    _fake_asyncpg(monkeypatch)
    recipe = load("asyncpg_pool", monkeypatch)
    counts = run_on_loops(recipe.user_count)
    assert counts == [[len("SELECT count(*) FROM users")] * 2] * 3
    assert _FakePool.instances[0].kwargs == {"min_size": 1, "max_size": 5}
    assert_one_client_per_loop(_FakePool, 3)
    assert all(pool.terminated == 0 for pool in _FakePool.instances)  # type: ignore[attr-defined]
    assert_all_released_gracefully()


def test_asyncpg_recipe_terminates_a_pool_whose_close_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A close() that outlives release_timeout falls back to terminate(), with a warning."""
    _fake_asyncpg(monkeypatch)
    recipe = load("asyncpg_pool", monkeypatch)

    async def hang(self: _FakePool) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(_FakePool, "close", hang)
    resourceloop.configure(release_timeout=0.05)
    with pytest.warns(resourceloop.warnings.ReleaseTimeoutWarning, match="asyncpg-pool"):
        asyncio.run(recipe.user_count())
    (pool,) = _FakePool.instances
    assert pool.terminated == 1  # type: ignore[attr-defined]
    stats = resourceloop.stats()
    assert (stats.release_timeouts, stats.forced_releases) == (1, 1)


# -- SQLAlchemy ------------------------------------------------------------------------------------


def test_sqlalchemy_recipe_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """With SQLAlchemy and aiosqlite installed, one engine per loop answers 42."""
    pytest.importorskip("sqlalchemy.ext.asyncio")
    pytest.importorskip("aiosqlite")
    recipe = load("sqlalchemy_engine", monkeypatch)
    monkeypatch.setattr(recipe, "DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    assert run_on_loops(recipe.answer) == [[42, 42]] * 3
    assert_all_released_gracefully()


def test_sqlalchemy_recipe_resourceloop_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a fake sqlalchemy: one AsyncEngine per loop, disposed on its loop."""

    class AsyncEngine(FakeClient):
        instances: ClassVar[list[FakeClient]] = []

        @contextlib.asynccontextmanager
        async def connect(self) -> Any:
            self.check()

            async def execute(statement: str) -> Any:
                self.check()
                return types.SimpleNamespace(
                    scalar_one=lambda: int(statement.rsplit(maxsplit=1)[-1])
                )

            yield types.SimpleNamespace(execute=execute)

        async def dispose(self) -> None:
            await self.aclose()

    fake_module(monkeypatch, "sqlalchemy", text=str)
    fake_module(monkeypatch, "sqlalchemy.ext")
    fake_module(
        monkeypatch,
        "sqlalchemy.ext.asyncio",
        AsyncEngine=AsyncEngine,
        create_async_engine=AsyncEngine,
    )
    recipe = load("sqlalchemy_engine", monkeypatch)
    assert run_on_loops(recipe.answer) == [[42, 42]] * 3
    assert AsyncEngine.instances[0].args == (recipe.DATABASE_URL,)
    assert_one_client_per_loop(AsyncEngine, 3)
    assert_all_released_gracefully()


# -- Django ----------------------------------------------------------------------------------------


def _django_requests(view: Callable[..., Any], requests: int) -> list[Any]:
    """Serve ``requests`` requests the way Django does under WSGI: ``async_to_sync(view)``."""
    from asgiref.sync import async_to_sync

    return in_threads(lambda i: async_to_sync(view)(object(), f"player{i}"), requests)


def test_django_recipe_real(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Django installed, the async view answers through asgiref and leaks nothing."""
    pytest.importorskip("django")
    settings = importlib.import_module("django.conf").settings
    if not settings.configured:
        settings.configure()
    recipe = load("django_view", monkeypatch)
    monkeypatch.setattr(recipe, "UPSTREAM", api)
    responses = _django_requests(recipe.summoner, 4)
    assert [json.loads(r.content)["name"] for r in responses] == [f"player{i}" for i in range(4)]
    assert_all_released_gracefully()


def test_django_recipe_resourceloop_side(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a fake django.http, the view runs through the real asgiref: a session per request."""

    class JsonResponse:
        def __init__(self, data: Any) -> None:
            self.data = data

    fake_module(monkeypatch, "django")
    fake_module(monkeypatch, "django.http", HttpRequest=object, JsonResponse=JsonResponse)
    recipe = load("django_view", monkeypatch)
    monkeypatch.setattr(recipe, "UPSTREAM", api)
    _django_requests(recipe.summoner, 2)  # warm up
    before = open_fds()
    responses = _django_requests(recipe.summoner, 4)
    assert [r.data["name"] for r in responses] == [f"player{i}" for i in range(4)]
    assert open_fds() == before
    assert_all_released_gracefully()


# -- Flask -----------------------------------------------------------------------------------------


def test_flask_recipe_releases_each_request(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask runs each async view on a new loop: one session per request, closed with it."""
    recipe = load("flask_view", monkeypatch)
    monkeypatch.setattr(recipe, "UPSTREAM", api)
    client = recipe.app.test_client()
    assert client.get("/summoner/warmup").get_json()["name"] == "warmup"
    before = open_fds()
    for name in ("ahri", "zed", "lux"):
        assert client.get(f"/summoner/{name}").get_json() == {
            "name": name,
            "puuid": f"puuid-{name}",
        }
    assert open_fds() == before
    assert_all_released_gracefully()
    assert resourceloop.stats().acquisitions == 4


# -- Celery and Dramatiq ---------------------------------------------------------------------------


def test_celery_recipe_real(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Celery installed, calling the task runs it here, managed, and returns the result."""
    pytest.importorskip("celery")
    recipe = load("celery_task", monkeypatch)
    assert recipe.match_duration_task(f"{api}/match/7") == 7000
    assert_all_released_gracefully()


def test_celery_recipe_resourceloop_side(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a fake Celery app, concurrent task calls each manage their own loop."""

    class Celery:
        def __init__(self, main: str) -> None:
            self.main = main

        def task(self, func: Callable[..., Any]) -> Callable[..., Any]:
            return func

    fake_module(monkeypatch, "celery", Celery=Celery)
    recipe = load("celery_task", monkeypatch)
    durations = in_threads(lambda i: recipe.match_duration_task(f"{api}/match/{i + 1}"), 3)
    assert durations == [1000, 2000, 3000]
    assert resourceloop.stats().loops_managed == 0
    assert_all_released_gracefully()


def test_dramatiq_recipe_real(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With Dramatiq installed (stub broker), calling the actor runs it here."""
    dramatiq = pytest.importorskip("dramatiq")
    stub = importlib.import_module("dramatiq.brokers.stub")
    dramatiq.set_broker(stub.StubBroker())
    recipe = load("dramatiq_actor", monkeypatch)
    recipe.record_match_duration(f"{api}/match/2")
    assert capsys.readouterr().out.endswith("/match/2: 2000 ms\n")
    assert_all_released_gracefully()


def test_dramatiq_recipe_resourceloop_side(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a fake dramatiq.actor, concurrent actor calls each manage their own loop."""
    fake_module(monkeypatch, "dramatiq", actor=lambda func: func)
    recipe = load("dramatiq_actor", monkeypatch)
    in_threads(lambda i: recipe.record_match_duration(f"{api}/match/{i + 1}"), 3)
    lines = sorted(capsys.readouterr().out.splitlines())
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["1000 ms", "2000 ms", "3000 ms"]
    assert_all_released_gracefully()


# -- ThreadPoolExecutor ----------------------------------------------------------------------------


def test_thread_pool_recipe(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four batches over four threads: the averages come back, every session is closed."""
    recipe = load("thread_pool", monkeypatch)
    batches = [["1", "2", "3"], ["2", "4"], ["5"], ["1", "1", "1", "5"]]
    recipe.averages(api, batches[:1])  # warm up
    before = open_fds()
    assert recipe.averages(api, batches) == [2000.0, 3000.0, 5000.0, 2000.0]
    assert open_fds() == before
    assert_all_released_gracefully()


def test_sync_portal_recipe(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Portal calls reuse one session and its sockets; closing it releases them, gracefully."""
    from resourceloop import sync

    recipe = load("sync_portal", monkeypatch)
    batches = [["1", "2", "3"], ["2", "4"], ["5"], ["1", "1", "1", "5"]]
    before = open_fds()
    try:
        recipe.averages(api, batches[:1])  # opens the portal's session and a connection
        opened = open_fds()
        for _ in range(5):  # the same calls again: the same session, no new sockets
            assert recipe.averages(api, batches) == [2000.0, 3000.0, 5000.0, 2000.0]
        assert resourceloop.stats().acquisitions == 1
        assert open_fds() <= opened + 16  # at most the connections 4 threads x 4 requests need
    finally:
        sync.portal().close()
    assert open_fds() == before
    assert recipe.nightly_report(api, batches) == [2000.0, 3000.0, 5000.0, 2000.0]
    assert open_fds() == before
    assert_all_released_gracefully()


# -- pytest plugin ---------------------------------------------------------------------------------


def _run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *("-p", "pytest_asyncio.plugin", "-p", "resourceloop.pytest_plugin"),
            *("-p", "no:cacheprovider", *args),
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pytest_recipe_passes_with_the_leak_check(tmp_path: Path) -> None:
    """The pytest recipe and its configuration, as shown, pass with the leak check on."""
    (tmp_path / "pyproject.toml").write_text((RECIPES / "pytest_config.toml").read_text())
    (tmp_path / "test_example.py").write_text((RECIPES / "pytest_example.py").read_text())
    result = _run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_pytest_recipe_leak_is_reported(tmp_path: Path) -> None:
    """The leaky test shown on the Recipes page fails, naming the template, as the page says."""
    (tmp_path / "pyproject.toml").write_text((RECIPES / "pytest_config.toml").read_text())
    (tmp_path / "test_leaky.py").write_text((RECIPES / "pytest_leaky.py").read_text())
    result = _run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 passed, 1 error" in result.stdout
    assert "ERROR at teardown of test_leaves_a_loop_open" in result.stdout
    assert "resource 'api-session' is still live on _UnixSelectorEventLoop" in result.stdout
    assert "a loop the test left unclosed" in result.stdout


# -- Troubleshooting quotes resourceloop's messages as the code emits them -----------------------


def _flat(text: str) -> str:
    """Whitespace collapsed and addresses blanked, so wrapped and real messages compare equal."""
    return " ".join(re.sub(r"0x[0-9a-f]+", "0x", text).split())


def test_troubleshooting_quotes_the_warnings_as_emitted() -> None:
    """Each resourceloop warning and error quoted on the Troubleshooting page is the real text."""
    page = _flat((DOCS / "troubleshooting.md").read_text())
    quoted: list[str] = []

    async def close(resource: object) -> None:
        pass

    async def hang(resource: object) -> None:
        await asyncio.Event().wait()

    api = resourceloop.ResourceTemplate(object, close, name="api-session")
    slow = resourceloop.ResourceTemplate(object, hang, name="slow-pool")

    async def use(template: resourceloop.ResourceTemplate[object]) -> asyncio.AbstractEventLoop:
        await template.acquire()
        return asyncio.get_running_loop()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resourceloop.configure(close_hook=False)
        closed_loop = asyncio.run(use(api))  # kept alive: the reaper finds it closed
        resourceloop.reap()
        del closed_loop
        resourceloop.configure(close_hook=True, release_timeout=0.1)
        asyncio.run(use(slow))
    quoted += [f"{w.category.__name__}: {w.message}" for w in caught]
    assert [w.category for w in caught] == [
        resourceloop.warnings.UngracefulLoopWarning,
        resourceloop.warnings.ForcedReleaseWarning,
        resourceloop.warnings.ReleaseTimeoutWarning,
    ]

    closed = asyncio.new_event_loop()
    closed.close()

    async def errors() -> None:
        with pytest.raises(resourceloop.LoopClosedError) as info:
            await api.acquire(closed)
        quoted.append(f"resourceloop.LoopClosedError: {info.value}")
        async with resourceloop.resource_manager():
            with pytest.raises(RuntimeError) as nested:
                async with resourceloop.resource_manager():
                    pass  # pragma: no cover - entering raises
        quoted.append(f"RuntimeError: {nested.value}")

    asyncio.run(errors())
    for message in quoted:
        assert _flat(message) in page, message


# -- the pages include what exists, and every recipe is included ---------------------------------

_SNIPPET = re.compile(r'^\s*-{2}8<-{2}\s+"([^"]+)"', re.MULTILINE)


def _includes() -> set[str]:
    found: set[str] = set()
    for page in DOCS.rglob("*.md"):
        for target in _SNIPPET.findall(page.read_text()):
            found.add(target.split(":", 1)[0])
    return found


def test_every_recipe_file_is_included_in_a_page() -> None:
    """No orphan under docs/recipes_src/: each file is shown to readers."""
    included = _includes()
    for path in sorted(RECIPES.iterdir()):
        if path.suffix in {".py", ".toml"} and path.name != "ruff.toml":
            assert f"docs/recipes_src/{path.name}" in included, path.name


def test_every_recipe_module_is_run_by_this_file() -> None:
    """Each recipe module is loaded by a test above (by name), so none can rot unseen."""
    source = Path(__file__).read_text()
    for path in sorted(RECIPES.glob("*.py")):
        stem = path.stem
        assert f'load("{stem}"' in source or f'RECIPES / "{path.name}"' in source, path.name


# -- the API reference covers every public name ---------------------------------------------------

PUBLIC_MODULES = {
    "resourceloop.warnings": "warnings.md",
    "resourceloop.queue": "queue.md",
    "resourceloop.sync": "sync.md",
    "resourceloop.contrib.aiohttp": "contrib-aiohttp.md",
    "resourceloop.pytest_plugin": "pytest-plugin.md",
}


def test_reference_documents_every_name_in_resourceloop_all() -> None:
    """Each name of ``resourceloop.__all__`` has its own entry on the reference page."""
    page = (DOCS / "reference" / "resourceloop.md").read_text()
    for name in resourceloop.__all__:
        assert f"::: resourceloop.{name}\n" in page, name
    assert "::: resourceloop.resources\n" in page


def test_reference_has_a_page_per_public_module() -> None:
    """Every public module has a reference page rendering it, listed in the site's nav."""
    nav = (ROOT / "mkdocs.yml").read_text()
    for module, page in PUBLIC_MODULES.items():
        assert f"::: {module}\n" in (DOCS / "reference" / page).read_text(), module
        assert f"reference/{page}" in nav, page
    package = ROOT / "resourceloop"
    found = {
        "resourceloop." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if not any(part.startswith("_") for part in path.relative_to(package).parts)
        and "demo" not in path.parts
    }
    assert found <= {*PUBLIC_MODULES, "resourceloop.resources"}, found


# -- the Performance page's build hook -------------------------------------------------------------


def test_performance_page_build_fails_loudly_without_benchmark_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No results.md: the docs build stops with an error naming the file and the command."""
    errors = pytest.importorskip("mkdocs.exceptions")
    hooks = load_file(DOCS / "_hooks.py", monkeypatch)
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    monkeypatch.setattr(hooks, "ROOT", tmp_path.parent)
    page = f"# Performance\n\n{hooks.RESULTS_INCLUDE}\n"
    with pytest.raises(errors.PluginError, match=r"results\.md is missing: run `python -m bench"):
        hooks.on_page_markdown(page)
    with pytest.raises(errors.PluginError, match=r"churn\.png is missing"):
        hooks.on_files([], config={})
    (tmp_path / "results.md").write_text("# Benchmarks\n\nNotes:\n\n- 4. threaded churn\n")
    expanded = hooks.on_page_markdown(page)
    assert "- 4\\. threaded churn" in expanded  # escaped: not a nested numbered list
    assert hooks.RESULTS_INCLUDE not in expanded
    assert hooks.on_page_markdown("# Other page\n") == "# Other page\n"
