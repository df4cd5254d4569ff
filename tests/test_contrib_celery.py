"""Tests for `resourceloop.contrib.celery`: the signal wiring and `async_task`, in process.

The real prefork pool (children ended by billiard's ``os._exit``) is in ``test_engines.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_managed_loops
from resourceloop.sync import portal

from .servers import require

require("celery")

from celery import signals  # noqa: E402

from resourceloop.contrib import celery as rl_celery  # noqa: E402


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    rl_celery.uninstall()
    portal().close()


def _receivers() -> int:
    return sum(
        1 for _key, receiver in signals.worker_process_shutdown.receivers if receiver is not None
    )


def test_install_is_idempotent_and_releases_at_worker_process_shutdown(
    installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One receiver however often install() runs; the signal calls release_at_process_end."""
    calls: list[str] = []
    monkeypatch.setattr(rl_celery, "release_at_process_end", lambda: calls.append("released"))
    before = _receivers()
    rl_celery.install()
    rl_celery.install()
    assert _receivers() == before + 1
    signals.worker_process_shutdown.send(sender=None, pid=1, exitcode=0)
    assert calls == ["released"]
    rl_celery.uninstall()
    rl_celery.uninstall()
    assert _receivers() == before


def test_async_task_runs_on_the_portal_with_only_its_templates(installed: None) -> None:
    """Each call is managed, on the default portal; only the given templates are acquired."""
    used = ResourceTemplate(object, lambda _: None, name="used", lazy=True)
    other = ResourceTemplate(object, lambda _: None, name="other-lazy", lazy=True)
    loops: list[asyncio.AbstractEventLoop] = []

    @rl_celery.async_task(templates=[used])
    async def task(n: int) -> int:
        """A task body."""
        loops.append(asyncio.get_running_loop())
        assert asyncio.get_running_loop() in resource_managed_loops
        return n * 2

    assert task.__doc__ == "A task body."
    assert [task(1), task(2)] == [2, 4]
    assert loops[0] is loops[1]  # the portal's one loop
    assert resourceloop.stats().acquisitions == 1
    portal().close()
    assert resourceloop.live_resources() == []
    assert other.name == "other-lazy"


def test_async_task_per_call(installed: None) -> None:
    """portal=False: a fresh loop per call, its resources released when the call returns."""
    used = ResourceTemplate(object, lambda _: None, name="used", lazy=True)

    @rl_celery.async_task(templates=[used], portal=False)
    async def task() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first, second = task(), task()
    assert first is not second
    assert first.is_closed()
    assert resourceloop.stats().acquisitions == 2
    assert resourceloop.live_resources() == []


def test_async_task_rejects_sync_functions_and_bad_templates() -> None:
    """TypeError when decorating, not at the first task."""

    def sync_body() -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        rl_celery.async_task(sync_body)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ResourceTemplate"):
        rl_celery.async_task(templates="engine")  # type: ignore[arg-type]
