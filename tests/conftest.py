"""Shared fixtures: every test starts and ends with an empty resourceloop runtime.

``RESOURCELOOP_SWITCHINTERVAL=1e-6`` runs the tests with ``sys.setswitchinterval(1e-6)``: the
interpreter then switches threads at almost every bytecode, a stand-in for free-threaded
CPython (``nox -s switchinterval``).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

import pytest

from resourceloop import _config, _runtime
from resourceloop._reach import counts_are_exact
from tests._fakes import Recorder

#: Tests of loops left behind being ended early (``_reach``), which needs reference counts
#: it can check (``counts_are_exact``): on an interpreter where they fail that check, those
#: loops stay tracked until their thread ends. Every CPython from 3.10 to 3.15 passes it.
exact_refcounts = pytest.mark.skipif(
    not counts_are_exact(),
    reason="this interpreter's reference counts fail _reach.counts_are_exact()",
)

#: Session fixtures that start a private server: their tests share one xdist worker.
_SERVER_FIXTURES = frozenset({"redis_url", "postgres_dsn"})


def pytest_configure(config: pytest.Config) -> None:
    interval = os.environ.get("RESOURCELOOP_SWITCHINTERVAL")
    if interval:
        sys.setswitchinterval(float(interval))
    # pytest-xdist registers it too; without xdist, --strict-markers still needs it known.
    config.addinivalue_line("markers", "xdist_group(name): run on the same pytest-xdist worker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test that uses a private server on one worker (``--dist loadgroup``).

    Each xdist worker is a process with session fixtures of its own: without a group, each
    would start its own redis-server and PostgreSQL (initdb alone is seconds of CPU).
    """
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("servers"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Move the imports out of the collector's sight (``gc.freeze()``) before collecting.

    Each test collects garbage before and after it runs (``_clean_runtime``). With the
    libraries the tests import (Django, SQLAlchemy, Celery, aiohttp...) in the heap, each full
    collection scanned about 300,000 objects (0.1 to 0.4 s): setup and teardown were about two
    thirds of the suite's time (``--durations=0``). Frozen, the imports (alive for the whole
    run anyway) cost nothing; what collection creates (about 36,000 objects) and everything a
    test creates is still collected: a full collection takes about 15 ms.

    Before collection, not after it: a frozen object that later becomes garbage is never
    collected, nor is anything it refers to. pytest gives each test item a ``funcargs`` dict
    when it collects it and drops it after the test; frozen, on 3.14 the dropped dict kept
    the test's fixtures alive (templates of one test showed up in the managers of the next).
    """
    _import_what_tests_will()
    gc.collect()
    gc.freeze()


#: Libraries the tests import, at module level or inside test functions, down to the
#: submodules they reach (a package's ``__init__`` often imports little: Django's alone left
#: 213 modules, about 50,000 objects, to later tests). Imported before the freeze: otherwise
#: they enter the heap later, outside it, and every full collection scans them again (about
#: 290,000 objects for all of them; each test collects twice). Measured by listing, at the
#: end of a run, the modules imported after the freeze.
_LIBRARIES = (
    "aiohttp",
    "aiohttp.web",
    "anthropic",
    "asgiref.sync",
    "asyncpg",
    "celery",
    "celery.app.base",
    "celery.app.control",
    "celery.events",
    "celery.contrib.testing.worker",
    "celery.worker",
    "django",
    "django.core.handlers.asgi",
    "django.db.models",
    "django.http",
    "django.test",
    "django.urls",
    "django.views",
    "dramatiq",
    "flask",
    "httpcore",
    "httpx",
    "hypothesis",
    "kombu",
    "kombu.transport.virtual",
    "openai",
    "openai.resources.chat",
    "redis.asyncio",
    "resourceloop.contrib.aiohttp",
    "resourceloop.contrib.anthropic",
    "resourceloop.contrib.asyncpg",
    "resourceloop.contrib.celery",
    "resourceloop.contrib.httpx",
    "resourceloop.contrib.openai",
    "resourceloop.contrib.redis",
    "resourceloop.contrib.sqlalchemy",
    "resourceloop.demo.server",
    "resourceloop.queue",
    "resourceloop.sync",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.ext.asyncio",
    "uvicorn",
    "uvicorn.server",
    "uvloop",
)


def _import_what_tests_will() -> None:
    for name in _LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception:  # not installed here (an optional extra): its tests skip
            continue


def pytest_unconfigure(config: pytest.Config) -> None:
    gc.unfreeze()


def pytest_report_header(config: pytest.Config) -> str:
    return f"thread switch interval: {sys.getswitchinterval()}s"


@pytest.fixture(autouse=True)
def _clean_runtime() -> Iterator[None]:
    # Templates of earlier tests can linger in reference cycles (a logged traceback holds
    # them); a ResourceManager would acquire them too, so collect them first.
    gc.collect()
    _runtime._reset_for_tests()
    # A framework an earlier test on this worker configured (Celery's worker sets the root
    # logger to ERROR) may have silenced resourceloop's warnings, which tests read.
    logging.root.setLevel(logging.WARNING)
    logger = logging.getLogger("resourceloop")
    logger.disabled = False
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    yield
    _runtime._reset_for_tests()
    gc.collect()


@pytest.fixture
def record_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning, from any thread (warnings are process-global with the GIL).

    Not so on free-threaded builds, where warnings are per context: see docs/free-threading.md.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


@pytest.fixture
def hook_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close hook off and the reaper thread idle, set without waking the reaper thread.

    ``configure()`` wakes the reaper for a pass, which could then race the test for a closed
    loop; settings read from the environment do not, and an hour's interval keeps it asleep.
    """
    monkeypatch.setenv("RESOURCELOOP_CLOSE_HOOK", "0")
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "3600")
    _config.reset_for_tests()


@pytest.fixture
def slow_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the reaper thread asleep (an hour's interval): the test drives every pass with
    ``reap()``. Use it with ``pytestmark = pytest.mark.usefixtures("slow_reaper")``.

    With the default 1 s interval, a test that takes longer than that (a loaded machine, a
    slower interpreter, a fork child still running) would see the thread release loops the
    test means to hand to ``reap()`` itself. Read from the environment, this wakes no thread.
    """
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "3600")


@pytest.fixture
def rec() -> Recorder:
    """A ``tests._fakes.Recorder``: templates and release functions that record every call."""
    return Recorder()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server on 127.0.0.1: ``RESOURCELOOP_TEST_REDIS_URL``, or a private one."""
    from tests.servers import private_redis

    url = os.environ.get("RESOURCELOOP_TEST_REDIS_URL")
    if url:
        yield url
        return
    with private_redis() as started:
        yield started


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL on 127.0.0.1: a database of this process's own on the server named by
    ``RESOURCELOOP_TEST_POSTGRES_DSN``, or a private server.

    A database of its own because CI runs test sessions side by side on one server, and
    PostgreSQL keeps its books (``pg_stat_database.sessions_abandoned``) per database: one
    session's deliberate kill -9 must not show up in another's count.
    """
    from tests.servers import own_database, private_postgres

    dsn = os.environ.get("RESOURCELOOP_TEST_POSTGRES_DSN")
    if dsn:
        with own_database(dsn) as private:
            yield private
        return
    with private_postgres() as started:
        yield started


@pytest.fixture
def gc_disabled() -> Iterator[None]:
    """The cyclic garbage collector off: what is closed here is closed without it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
