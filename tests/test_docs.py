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
import importlib.util
import json
import logging
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
from typing import Any

import pytest

import resourceloop
from tests._env import child_env
from tests.servers import postgres_query, require

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
        env=child_env(),
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


_loaded: list[types.ModuleType] = []


@pytest.fixture(autouse=True)
def _forget_recipes() -> Iterator[None]:
    """Empty each recipe module at the end of its test.

    Frameworks keep a recipe's functions after the test (Django's URL resolver cache, Celery's
    app registry, Dramatiq's global broker), and through their globals its templates; a live
    template would be acquired by every later ``resource_manager()`` of the suite.
    """
    yield
    while _loaded:
        vars(_loaded.pop()).clear()


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
    _loaded.append(module)
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
    recipe = load_file(ROOT / "examples" / "quickstart.py", monkeypatch)
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


# -- httpx, redis, asyncpg, SQLAlchemy: the contrib templates against real servers -------------


def test_httpx_recipe(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three loops, two calls each: three clients, closed on their loops, fds flat."""
    require("httpx")
    recipe = load("httpx_client", monkeypatch)
    run_on_loops(lambda: recipe.get_json(f"{api}/warm-up"))
    before = open_fds()
    assert (
        run_on_loops(lambda: recipe.get_json(f"{api}/h")) == [[{"ok": True, "path": "/h"}] * 2] * 3
    )
    assert open_fds() == before
    assert_all_released_gracefully()


# -- OpenAI, Anthropic, and any SDK built on an httpx client --------------------------------------


@pytest.fixture(scope="module")
def llm_api() -> Iterator[Any]:
    """Local stand-ins of the OpenAI and Anthropic APIs (``tests/llm_server.py``)."""
    require("aiohttp")
    from tests.llm_server import running_llm_server

    with running_llm_server() as server:
        yield server


def _check_llm_recipe(recipe: Any, llm_api: Any) -> None:
    """Three loops ask twice, plain and streamed: a client per loop, closed on it, fds flat."""
    from tests.aiohttp_server import count_fds
    from tests.llm_server import REPLY

    run_on_loops(lambda: recipe.ask("warm-up"))
    before = count_fds(llm_api)
    assert run_on_loops(lambda: recipe.ask("hi")) == [[" ".join(REPLY)] * 2] * 3
    assert run_on_loops(lambda: recipe.ask_streamed("hi")) == [[" ".join(REPLY)] * 2] * 3
    assert count_fds(llm_api) == before
    assert_all_released_gracefully()


def test_openai_recipe(llm_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenAI recipe against the local stand-in: a client per loop, released on it."""
    require("openai")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{llm_api.url}/v1")
    _check_llm_recipe(load("openai_client", monkeypatch), llm_api)


def test_anthropic_recipe(llm_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Anthropic recipe against the local stand-in: a client per loop, released on it."""
    require("anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_api.url)
    _check_llm_recipe(load("anthropic_client", monkeypatch), llm_api)


class _FakeSDK:
    """An SDK that takes ``http_client=`` (pydantic-ai's providers, LangChain's clients...)."""

    def __init__(self, http_client: Any) -> None:
        self.http_client = http_client

    async def get(self, url: str) -> Any:
        return (await self.http_client.get(url)).json()


def test_http_client_sdk_recipe(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each loop's SDK object sits on that loop's httpx client, which is closed with the loop."""
    require("httpx")
    recipe = load("http_client_sdk", monkeypatch)
    sdks = recipe.sdk_template(_FakeSDK, name="fake-sdk")
    made: list[_FakeSDK] = []

    async def work() -> Any:
        sdk = await sdks.acquire()
        made.append(sdk)
        return await sdk.get(f"{api}/sdk")

    run_on_loops(work)
    before = open_fds()
    made.clear()
    assert run_on_loops(work) == [[{"ok": True, "path": "/sdk"}] * 2] * 3
    assert len({id(sdk) for sdk in made}) == 3  # one per loop, kept alive by the list
    assert len({id(sdk.http_client) for sdk in made}) == 3
    assert all(sdk.http_client.is_closed for sdk in made)
    assert open_fds() == before
    assert_all_released_gracefully()


def test_redis_recipe(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against redis-server: six increments from three loops, every connection closed."""
    require("redis")
    monkeypatch.setenv("REDIS_URL", redis_url)
    recipe = load("redis_client", monkeypatch)
    run_on_loops(lambda: recipe.count_visit("warm-up"))
    before = open_fds()
    counts = run_on_loops(lambda: recipe.count_visit(f"docs-{os.getpid()}-{id(recipe)}"))
    assert sorted(n for pair in counts for n in pair) == [1, 2, 3, 4, 5, 6]
    assert open_fds() == before
    assert_all_released_gracefully()


def test_asyncpg_recipe(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against PostgreSQL: a pool per loop counts the users, every connection closed."""
    require("asyncpg")
    postgres_query(
        postgres_dsn,
        "DROP TABLE IF EXISTS users; CREATE TABLE users (id int); "
        "INSERT INTO users VALUES (1), (2), (3)",
    )
    monkeypatch.setenv("POSTGRES_DSN", postgres_dsn)
    recipe = load("asyncpg_pool", monkeypatch)
    run_on_loops(recipe.user_count)
    before = open_fds()
    assert run_on_loops(recipe.user_count) == [[3, 3]] * 3
    assert open_fds() == before
    assert_all_released_gracefully()


def test_asyncpg_recipe_terminates_a_pool_whose_close_hangs(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection never released: ``close()`` outlives release_timeout, ``terminate_now``
    closes everything, with one warning naming the template."""
    require("asyncpg")
    monkeypatch.setenv("POSTGRES_DSN", postgres_dsn)
    recipe = load("asyncpg_pool", monkeypatch)
    resourceloop.configure(release_timeout=0.05)
    before = open_fds()
    held: list[Any] = []

    async def leak_a_connection() -> None:
        held.append(await (await recipe.pools.acquire()).acquire())

    with pytest.warns(resourceloop.warnings.ReleaseTimeoutWarning, match="asyncpg-pool"):
        asyncio.run(leak_a_connection())
    held.clear()
    assert open_fds() == before
    stats = resourceloop.stats()
    assert (stats.release_timeouts, stats.forced_releases, stats.release_failures) == (1, 1, 0)


def test_sqlalchemy_recipe(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against PostgreSQL through asyncpg: one engine per loop answers 42, fds flat."""
    require("sqlalchemy.ext.asyncio")
    require("asyncpg")
    monkeypatch.setenv(
        "DATABASE_URL", postgres_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    )
    recipe = load("sqlalchemy_engine", monkeypatch)
    run_on_loops(recipe.answer)
    before = open_fds()
    assert run_on_loops(recipe.answer) == [[42, 42]] * 3
    assert open_fds() == before
    assert_all_released_gracefully()


# -- Django ----------------------------------------------------------------------------------------


@pytest.fixture
def django_urls(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Django configured once for the process; a URLconf module each test fills in."""
    require("django")
    import django
    from django.conf import settings
    from django.urls import clear_url_caches

    urls = types.ModuleType("_docs_django_urls")
    urls.urlpatterns = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, urls.__name__, urls)
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=urls.__name__,
            ALLOWED_HOSTS=["testserver"],
            SECRET_KEY="resourceloop-tests",
            DEBUG=False,
            USE_TZ=True,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
        )
        django.setup()
    clear_url_caches()
    return urls


def test_django_recipe_through_the_test_client(
    api: str, monkeypatch: pytest.MonkeyPatch, django_urls: types.ModuleType
) -> None:
    """Django's own request handling (WSGI test client): each async view on a new loop."""
    from django.test import Client
    from django.urls import path

    recipe = load("django_view", monkeypatch)
    monkeypatch.setattr(recipe, "UPSTREAM", api)
    django_urls.urlpatterns = [path("summoner/<str:name>", recipe.summoner)]  # type: ignore[attr-defined]
    client = Client()
    assert client.get("/summoner/warmup").json()["name"] == "warmup"
    before = open_fds()
    for name in ("ahri", "zed", "lux"):
        response = client.get(f"/summoner/{name}")
        assert response.status_code == 200
        assert response.json() == {"name": name, "puuid": f"puuid-{name}"}
    assert open_fds() == before
    assert_all_released_gracefully()
    assert resourceloop.stats().acquisitions == 4


def test_django_recipe_through_async_to_sync(
    api: str, monkeypatch: pytest.MonkeyPatch, django_urls: types.ModuleType
) -> None:
    """The view called as Django calls it under WSGI, ``async_to_sync``, from four threads."""
    from asgiref.sync import async_to_sync
    from django.test import RequestFactory

    recipe = load("django_view", monkeypatch)
    monkeypatch.setattr(recipe, "UPSTREAM", api)
    factory = RequestFactory()

    def serve(i: int) -> Any:
        return async_to_sync(recipe.summoner)(factory.get("/"), f"player{i}")

    in_threads(serve, 2)  # warm up
    before = open_fds()
    responses = in_threads(serve, 4)
    assert [json.loads(r.content)["name"] for r in responses] == [f"player{i}" for i in range(4)]
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


# -- Celery and Dramatiq: real in-process workers ------------------------------------------------


@pytest.mark.engine
def test_celery_recipe_in_a_worker(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process Celery worker (solo pool, memory broker): four tasks, one session."""
    require("celery")
    from celery.contrib.testing.worker import start_worker

    # Celery's worker sets up logging for the whole process: warnings filters of its own,
    # logging.captureWarnings(True), handlers on the root logger. Undo all of it afterwards.
    monkeypatch.setattr(warnings, "filters", warnings.filters[:])
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    recipe = load("celery_task", monkeypatch)
    recipe.app.conf.update(
        broker_url="memory://",
        result_backend="cache+memory://",
        broker_connection_retry_on_startup=False,
    )
    from resourceloop.contrib.celery import uninstall
    from resourceloop.sync import portal

    try:
        with start_worker(recipe.app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            warm = recipe.match_duration_task.delay(f"{api}/match/1")
            assert warm.get(timeout=60) == 1000
            before = open_fds()
            results = [recipe.match_duration_task.delay(f"{api}/match/{i}") for i in (2, 3, 4)]
            assert [r.get(timeout=60) for r in results] == [2000, 3000, 4000]
            assert open_fds() == before  # the portal's session and connection, reused
    finally:
        logging.captureWarnings(False)
        uninstall()
        portal().close()  # what ends the worker process does (install(), or interpreter exit)
    assert_all_released_gracefully()
    assert resourceloop.stats().acquisitions == 1  # one session for the four tasks


@pytest.mark.engine
def test_dramatiq_recipe_in_a_worker(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Dramatiq ``Worker`` on a ``StubBroker`` runs the actor for three messages."""
    dramatiq = require("dramatiq")
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    recipe = load("dramatiq_actor", monkeypatch)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        recipe.record_match_duration.send(f"{api}/match/1")
        broker.join(recipe.record_match_duration.queue_name, timeout=60_000)
        worker.join()
        before = open_fds()
        for i in (2, 3, 4):
            recipe.record_match_duration.send(f"{api}/match/{i}")
        broker.join(recipe.record_match_duration.queue_name, timeout=60_000)
        worker.join()
        assert open_fds() == before
    finally:
        worker.stop()
        broker.close()
    lines = sorted(capsys.readouterr().out.splitlines())
    assert [line.rsplit(": ", 1)[1] for line in lines] == [
        "1000 ms",
        "2000 ms",
        "3000 ms",
        "4000 ms",
    ]
    assert_all_released_gracefully()
    # The actor's manager acquires every live non-lazy template: the recipe's, and any other.
    eager = sum(1 for template in resourceloop.resource_templates if not template.lazy)
    assert resourceloop.stats().acquisitions == 4 * eager


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
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *("-p", "pytest_asyncio.plugin", "-p", "resourceloop.pytest_plugin"),
            *("-p", "no:cacheprovider", *args),
        ],
        cwd=directory,
        env=child_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
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


@pytest.mark.parametrize(
    ("page", "variable", "value"),
    [
        ("troubleshooting.md", "RESOURCELOOP_RELEASE_TIMEOUT", "0"),
        ("resources.md", "RESOURCELOOP_REAP_INTERVAL", "soon"),
    ],
)
def test_pages_quote_the_configuration_error_as_raised(
    monkeypatch: pytest.MonkeyPatch, page: str, variable: str, value: str
) -> None:
    """The ConfigurationError the pages show is the one a bad variable raises."""
    from resourceloop import _config

    monkeypatch.setenv(variable, value)
    _config.reset_for_tests()
    with pytest.raises(resourceloop.ConfigurationError) as info:
        resourceloop.configure()
    quoted = f"resourceloop.ConfigurationError: {info.value}"
    assert _flat(quoted) in _flat((DOCS / page).read_text())


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
    "resourceloop.contrib.httpx": "contrib-httpx.md",
    "resourceloop.contrib.redis": "contrib-redis.md",
    "resourceloop.contrib.asyncpg": "contrib-asyncpg.md",
    "resourceloop.contrib.sqlalchemy": "contrib-sqlalchemy.md",
    "resourceloop.contrib.celery": "contrib-celery.md",
    "resourceloop.contrib.openai": "contrib-openai.md",
    "resourceloop.contrib.anthropic": "contrib-anthropic.md",
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


def test_build_fails_loudly_without_the_vendored_mermaid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No vendored Mermaid: the build stops (Material would fetch it from a CDN instead)."""
    errors = pytest.importorskip("mkdocs.exceptions")
    hooks = load_file(DOCS / "_hooks.py", monkeypatch)
    monkeypatch.setattr(hooks, "VENDOR", tmp_path / "build" / "docs-vendor")
    monkeypatch.setattr(hooks, "ROOT", tmp_path)
    monkeypatch.setattr(hooks, "PUBLISHED", ())
    with pytest.raises(errors.PluginError, match=r"mermaid\.min\.js is missing: run `python docs/"):
        hooks.on_files([], config={})


# -- README and Recipes: links that work anywhere, examples that run ------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>")


def test_readme_links_are_absolute() -> None:
    """Every link in the README works on a package index page, where relative links break."""
    links = [a or b for a, b in _LINK.findall((ROOT / "README.md").read_text())]
    assert links
    relative = [link for link in links if not link.startswith(("https://", "http://"))]
    assert relative == []


def test_readme_and_recipes_link_the_examples() -> None:
    """Readers find the runnable programs from the README and the Recipes page."""
    examples = "https://github.com/resourceloop/resourceloop/tree/main/examples"
    assert f"]({examples})" in (ROOT / "README.md").read_text()
    assert f"]({examples})" in (DOCS / "recipes.md").read_text()


def test_recipes_page_is_for_users() -> None:
    """How the tests stand in for missing packages is in tests/README.md, not on the page."""
    page = (DOCS / "recipes.md").read_text()
    for note in ("stand-in", "test environment", "RESOURCELOOP_TEST_"):
        assert note not in page
    assert "RESOURCELOOP_TEST_REDIS_URL" in (ROOT / "tests" / "README.md").read_text()
