"""Tests for `resourceloop.ResourceTemplate`: construction, acquire, release and purge."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import threading
import warnings
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

import resourceloop
from resourceloop import LoopClosedError, ResourceTemplate, resource_templates
from resourceloop.warnings import ForcedReleaseWarning, UngracefulLoopWarning
from tests._fakes import Fake, Recorder
from tests._loops import LOOP_FACTORIES, LoopFactory, run
from tests._warnings import logged, record_text

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="remote-loop")

    def __enter__(self) -> LoopThread:
        self.thread.start()
        ready = threading.Event()
        self.loop.call_soon_threadsafe(ready.set)
        assert ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


def closed_loop_in_thread(template: ResourceTemplate[Any], *, close: bool = True) -> Any:
    """Acquire ``template`` on a new loop in a thread that ends; close the loop if asked."""
    out: list[Any] = []

    def body() -> None:
        loop = asyncio.new_event_loop()
        out.append(loop)
        out.append(loop.run_until_complete(template.acquire()))
        if close:
            loop.close()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return out


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"acquire_func": 42},
        {"acquire_func": None},
        {"acquire_func": Recorder().make, "release_func": "close"},
        {"acquire_func": Recorder().make, "force_release_func": 3.5},
        {"acquire_func": Recorder().make, "name": 7},
        {"acquire_func": Recorder().make, "lazy": "yes"},
        {"acquire_func": Recorder().make, "lazy": 1},
        {"acquire_func": Recorder().make, "lazy": None},
    ],
    ids=[
        *("acquire-int", "acquire-none", "release", "force-release", "name"),
        *("lazy-str", "lazy-int", "lazy-none"),
    ],
)
def test_bad_arguments_raise_type_error_and_register_nothing(kwargs: dict[str, Any]) -> None:
    """A non-callable function, a non-string name or a non-bool lazy is a TypeError naming the
    argument; nothing is registered."""
    before = list(resource_templates)
    argument = next(key for key in kwargs if key != "acquire_func" or len(kwargs) == 1)
    with pytest.raises(TypeError, match=f"^{argument} must be"):
        ResourceTemplate(**kwargs)
    assert list(resource_templates) == before


@pytest.mark.parametrize("name", ["", " ", "\t\n"])
def test_empty_name_raises_value_error_and_registers_nothing(name: str) -> None:
    """An empty or blank name would make warnings and stats() unreadable: ValueError."""
    before = list(resource_templates)
    with pytest.raises(ValueError, match=r"^name must be a non-empty string .*leave it out"):
        ResourceTemplate(Recorder().make, name=name)
    assert list(resource_templates) == before


def test_acquire_release_purge_without_a_running_loop_name_the_template() -> None:
    """Driven outside asyncio (no running loop), each call says which template and what to do."""
    template = ResourceTemplate(Recorder().make, name="api-client")
    for call in (template.acquire, template.release, template.purge):
        awaitable = call()
        assert inspect.isawaitable(awaitable)
        coroutine = awaitable.__await__()
        with pytest.raises(RuntimeError) as info:
            coroutine.send(None)
        message = str(info.value)
        assert message.startswith(f"'api-client'.{call.__name__}() needs a running asyncio")
        assert "asyncio.run()" in message
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
    assert resourceloop.stats().loops_tracked == 0
    assert resourceloop.stats().acquisitions == 0


def test_name_defaults_to_qualified_name_of_acquire_func() -> None:
    """Without ``name=``, the template is named after ``acquire_func.__qualname__``."""

    def make_client() -> object:
        return object()

    template = ResourceTemplate(make_client)
    assert template.name == make_client.__qualname__
    assert template.name.endswith("<locals>.make_client")
    assert ResourceTemplate(Recorder().make).name == "Recorder.make"
    assert ResourceTemplate(make_client, name="client").name == "client"
    # A callable without __qualname__ still gets a descriptive string.
    partial = functools.partial(make_client)
    assert ResourceTemplate(partial).name == repr(partial)


def test_properties_and_repr(rec: Recorder) -> None:
    """The properties return what was given; the repr shows the name and laziness."""
    template = ResourceTemplate(
        rec.make, rec.release, name="db-pool", lazy=True, force_release_func=rec.force
    )
    assert template.acquire_func == rec.make
    assert template.release_func == rec.release
    assert template.force_release_func == rec.force
    assert template.name == "db-pool"
    assert template.lazy is True
    assert repr(template) == "<ResourceTemplate 'db-pool' lazy>"

    plain = ResourceTemplate(rec.make, name="plain")
    assert plain.release_func is None
    assert plain.force_release_func is None
    assert plain.lazy is False
    assert repr(plain) == "<ResourceTemplate 'plain'>"


def test_resource_templates_lists_templates_in_creation_order() -> None:
    """``resource_templates`` is a live, read-only list of the templates, oldest first."""
    first = ResourceTemplate(Recorder().make, name="first")
    second = ResourceTemplate(Recorder().make, name="second")
    assert first in resource_templates
    assert second in resource_templates
    assert resource_templates[-2:] == [first, second]
    assert resource_templates[-1] is second
    assert list(resource_templates)[-2:] == [first, second]
    assert "second" in repr(resource_templates)
    assert object() not in resource_templates
    assert not hasattr(resource_templates, "append")


def test_resource_templates_does_not_keep_templates_alive() -> None:
    """Thousands of dropped templates leave ``resource_templates`` as it was."""
    gc.collect()
    baseline = len(resource_templates)
    templates = [ResourceTemplate(Recorder().make, name=f"t{i}") for i in range(2000)]
    assert len(resource_templates) == baseline + 2000
    probe = weakref.ref(templates[1000])
    del templates
    gc.collect()
    assert probe() is None
    assert len(resource_templates) == baseline


def test_template_used_on_a_loop_is_freed_after_release(rec: Recorder) -> None:
    """A template acquired and released on a loop is not kept alive by the runtime."""

    def use_one() -> weakref.ReferenceType[ResourceTemplate[Fake]]:
        template = ResourceTemplate(rec.make, rec.release)

        async def main() -> None:
            await template.acquire()
            await template.release()

        run(main)
        return weakref.ref(template)

    probe = use_one()
    gc.collect()
    assert probe() is None
    assert len(rec.released) == 1


# -- acquire -----------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", LOOP_FACTORIES)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_acquire_creates_once_per_loop_on_that_loop(
    rec: Recorder, kind: str, factory: LoopFactory
) -> None:
    """Repeated acquisitions on one loop return the one resource, created on that loop."""
    template = ResourceTemplate(rec.make if kind == "sync" else rec.amake, rec.release)

    async def main() -> tuple[Fake, Fake, Fake, asyncio.AbstractEventLoop]:
        first = await template.acquire()
        second = await template.acquire()
        third = await template.acquire(loop=asyncio.get_running_loop())
        return first, second, third, asyncio.get_running_loop()

    first, second, third, loop = run(main, factory)
    assert first is second is third
    assert rec.created == [first]
    assert first.loop is loop
    assert first.thread is threading.current_thread()
    # The close hook released it on its loop when the loop closed.
    assert [(r.resource, r.loop) for r in rec.released] == [(first, loop)]
    stats = resourceloop.stats()
    assert stats.acquisitions == 1
    assert stats.graceful_releases == 1


def test_acquire_gives_each_loop_its_own_resource(rec: Recorder) -> None:
    """Two loops get two resources, each created on its own loop."""
    template = ResourceTemplate(rec.amake, rec.release)

    async def main() -> tuple[Fake, asyncio.AbstractEventLoop]:
        return await template.acquire(), asyncio.get_running_loop()

    one, loop_one = run(main)
    two, loop_two = run(main)
    assert one is not two
    assert (one.loop, two.loop) == (loop_one, loop_two)
    assert loop_one is not loop_two
    assert [r.resource for r in rec.released] == [one, two]


def test_concurrent_first_acquisitions_share_one_creation(rec: Recorder) -> None:
    """Many tasks asking at once on a fresh loop wait for one shared creation."""
    calls = 0

    async def main() -> None:
        nonlocal calls
        started = asyncio.Event()
        gate = asyncio.Event()

        async def create() -> Fake:
            nonlocal calls
            calls += 1
            started.set()
            await gate.wait()
            return rec.make()

        template = ResourceTemplate(create, rec.release)
        tasks = [asyncio.ensure_future(template.acquire()) for _ in range(50)]
        await started.wait()
        assert not any(task.done() for task in tasks)
        gate.set()
        results = await asyncio.gather(*tasks)
        assert all(result is results[0] for result in results)
        assert await template.acquire() is results[0]

    run(main)
    assert calls == 1
    assert len(rec.created) == 1
    assert len(rec.released) == 1


@pytest.mark.parametrize("cancel", ["first", "first-and-another", "all"])
def test_cancelling_a_waiter_never_cancels_the_creation(rec: Recorder, cancel: str) -> None:
    """Cancelling waiters, even the one that started the creation, leaves it running."""
    calls = 0

    async def main() -> None:
        nonlocal calls
        started = asyncio.Event()
        gate = asyncio.Event()

        async def create() -> Fake:
            nonlocal calls
            calls += 1
            started.set()
            await gate.wait()
            return rec.make()

        template = ResourceTemplate(create, rec.release)
        tasks = [asyncio.ensure_future(template.acquire()) for _ in range(10)]
        await started.wait()
        doomed = {"first": tasks[:1], "first-and-another": tasks[:1] + tasks[5:6]}.get(
            cancel, tasks
        )
        for task in doomed:
            task.cancel()
        await asyncio.wait(doomed)
        assert all(task.cancelled() for task in doomed)
        gate.set()
        survivors = [task for task in tasks if task not in doomed]
        results = await asyncio.gather(*survivors)
        resource = await template.acquire()
        assert all(result is resource for result in results)
        assert rec.created == [resource]

    run(main)
    assert calls == 1
    assert len(rec.released) == 1


def test_failing_creation_reaches_every_waiter_and_is_retried(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising acquire_func fails every waiter, stores nothing, and the next call retries."""
    calls = 0
    fail = True

    async def main() -> None:
        nonlocal calls, fail
        started = asyncio.Event()
        gate = asyncio.Event()

        async def create() -> Fake:
            nonlocal calls
            calls += 1
            started.set()
            await gate.wait()
            if fail:
                raise ConnectionError("database is down")
            return rec.make()

        template = ResourceTemplate(create, rec.release, name="db")
        tasks = [asyncio.ensure_future(template.acquire()) for _ in range(10)]
        await started.wait()
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(result, ConnectionError) for result in results)
        stats = resourceloop.stats()
        assert stats.acquisitions == 0
        assert "db" not in stats.resources_live
        assert rec.created == []

        fail = False
        resource = await template.acquire()
        assert rec.created == [resource]
        assert await template.acquire() is resource
        assert resourceloop.stats().resources_live["db"] == 1

    with caplog.at_level(logging.ERROR):
        run(main)
    assert calls == 2
    assert [r.resource for r in rec.released] == rec.created
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_failing_creation_with_every_waiter_cancelled_is_not_reported_as_unretrieved(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """If every waiter left, a failed creation is not logged as never retrieved, and retried."""
    calls = 0

    async def main() -> None:
        gate = asyncio.Event()
        started = asyncio.Event()
        failed = asyncio.Event()

        async def create() -> Fake:
            nonlocal calls
            calls += 1
            if calls == 1:
                started.set()
                await gate.wait()
                failed.set()
                raise ConnectionError("nobody is listening")
            return rec.make()

        template = ResourceTemplate(create)
        task = asyncio.ensure_future(template.acquire())
        await started.wait()  # the task started the creation and waits for it
        task.cancel()
        await asyncio.wait([task])
        gate.set()
        await failed.wait()  # the creation failed with nobody waiting for it
        await asyncio.sleep(0)
        assert await template.acquire() is rec.created[0]

    with caplog.at_level(logging.ERROR):
        run(main)
        gc.collect()
    assert calls == 2
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_sync_factory_failure_is_raised_and_retried(rec: Recorder) -> None:
    """A synchronous acquire_func that raises stores nothing; the next call retries."""
    attempts: list[int] = []

    def create() -> Fake:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("try again")
        return rec.make()

    template = ResourceTemplate(create, rec.release)

    async def main() -> Fake:
        with pytest.raises(OSError, match="try again"):
            await template.acquire()
        assert resourceloop.stats().acquisitions == 0
        return await template.acquire()

    resource = run(main)
    assert rec.created == [resource]
    assert len(attempts) == 2


def test_loop_argument_must_be_an_event_loop(rec: Recorder) -> None:
    """``loop=`` that is not an event loop is a TypeError, for acquire and release."""
    template = ResourceTemplate(rec.make, name="api")

    async def main() -> None:
        with pytest.raises(TypeError, match=r"'api'\.acquire.*event loop"):
            await template.acquire(loop="main")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"'api'\.release.*event loop"):
            await template.release(loop=object())  # type: ignore[arg-type]

    run(main)
    assert rec.created == []


def test_acquire_on_closed_loop_raises_loop_closed_error(rec: Recorder) -> None:
    """A closed loop cannot acquire: LoopClosedError, a RuntimeError naming the template."""
    assert issubclass(LoopClosedError, RuntimeError)
    template = ResourceTemplate(rec.make, name="cache")
    closed = asyncio.new_event_loop()
    closed.close()

    async def main() -> None:
        with pytest.raises(LoopClosedError, match=r"(?s)'cache'.*closed"):
            await template.acquire(loop=closed)

    run(main)
    assert rec.created == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_acquire_and_release_on_a_loop_running_in_another_thread(rec: Recorder, kind: str) -> None:
    """With an explicit loop running elsewhere, the work happens on that loop and thread."""
    template = ResourceTemplate(
        rec.make if kind == "sync" else rec.amake,
        rec.release if kind == "sync" else rec.arelease,
    )
    with LoopThread() as remote:

        async def main() -> None:
            resource = await template.acquire(loop=remote.loop)
            assert resource.loop is remote.loop
            assert resource.thread is remote.thread
            assert await template.acquire(loop=remote.loop) is resource
            # Nothing was acquired for the calling loop itself.
            assert rec.created == [resource]
            await template.release(loop=remote.loop)
            assert [(r.resource, r.loop, r.thread) for r in rec.released] == [
                (resource, remote.loop, remote.thread)
            ]
            # Released means gone: the next acquisition creates a new one, still over there.
            again = await template.acquire(loop=remote.loop)
            assert again is not resource
            assert again.loop is remote.loop
            await template.release(loop=remote.loop)

        run(main)
    assert len(rec.created) == 2
    assert len(rec.released) == 2
    assert resourceloop.stats().graceful_releases == 2


def test_remote_acquisition_fails_cleanly_when_that_loop_shuts_down(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """If the other thread's asyncio.run() ends mid-creation, the caller gets LoopClosedError.

    Not a CancelledError: the caller was not cancelled, and a stray one would cancel it.
    """
    started = threading.Event()
    ready = threading.Event()
    remote: dict[str, Any] = {}

    async def hang() -> Fake:
        started.set()
        await asyncio.Event().wait()
        return rec.make()

    template = ResourceTemplate(hang, rec.release, name="hub-client")

    async def serve() -> None:
        remote["loop"] = asyncio.get_running_loop()
        remote["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    loop: asyncio.AbstractEventLoop = remote["loop"]

    async def main() -> None:
        call = asyncio.ensure_future(template.acquire(loop=loop))
        await asyncio.to_thread(started.wait, 10)
        loop.call_soon_threadsafe(remote["stop"].set)  # asyncio.run() cancels what is left
        with pytest.raises(LoopClosedError, match=r"'hub-client'.*shutting down"):
            await call
        await asyncio.sleep(0)  # this task was not cancelled: it carries on

    with caplog.at_level(logging.WARNING):
        run(main)
        thread.join(10)
        gc.collect()
    assert rec.created == []
    assert resourceloop.stats().acquisitions == 0
    assert logged(caplog.records) == []


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked-loop", "tracked-loop"])
def test_remote_acquisition_fails_cleanly_when_that_loop_is_closed(
    rec: Recorder, caplog: pytest.LogCaptureFixture, tracked: bool
) -> None:
    """A loop stopped and closed mid-creation fails the caller with LoopClosedError.

    On a loop the runtime already tracks, the close hook fails the waiting caller at once;
    otherwise the caller notices the closed loop itself. Neither way logs an error of ours.
    """
    started = threading.Event()

    async def hang() -> Fake:
        started.set()
        await asyncio.Event().wait()
        return rec.make()

    template = ResourceTemplate(hang, rec.release, name="hub-client")
    other = ResourceTemplate(rec.make, rec.release, name="other")
    loop = asyncio.new_event_loop()

    def serve() -> None:
        loop.run_forever()
        loop.close()  # pending tasks left behind: asyncio logs them, that part is expected

    thread = threading.Thread(target=serve)
    thread.start()

    async def main() -> None:
        if tracked:
            await other.acquire(loop=loop)
        call = asyncio.ensure_future(template.acquire(loop=loop))
        await asyncio.to_thread(started.wait, 10)
        loop.call_soon_threadsafe(loop.stop)
        with pytest.raises(LoopClosedError, match="closed"):
            await call

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
        thread.join(10)
        gc.collect()
    ours = [r for r in caplog.records if r.name != "asyncio"]
    assert [r.getMessage() for r in ours] == []
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert [c.serial for c in rec.created] == ([0] if tracked else [])
    assert len(rec.released) == len(rec.created)  # "other", gracefully by the close hook


def test_acquire_on_an_idle_loop_raises_runtime_error(rec: Recorder) -> None:
    """An explicit loop that is neither running nor closed cannot do the work."""
    template = ResourceTemplate(rec.make, name="idle-client")
    idle = asyncio.new_event_loop()
    try:

        async def main() -> None:
            with pytest.raises(RuntimeError, match=r"'idle-client'.*running") as info:
                await template.acquire(loop=idle)
            assert not isinstance(info.value, LoopClosedError)

        run(main)
    finally:
        idle.close()
    assert rec.created == []


def test_acquire_without_a_running_loop_raises_runtime_error(rec: Recorder) -> None:
    """Driving acquire() outside any running loop fails like asyncio does."""
    template = ResourceTemplate(rec.make)
    coro = template.acquire()
    assert isinstance(coro, Coroutine)
    with pytest.raises(RuntimeError):
        coro.send(None)
    coro.close()
    assert rec.created == []


# -- the hot path ------------------------------------------------------------------------------


def test_hot_path_works_with_common_asyncio_combinators(rec: Recorder) -> None:
    """On a loop that holds the resource: await, gather, wait_for, shield, ensure_future."""
    template = ResourceTemplate(rec.amake, rec.release)

    async def main() -> None:
        resource = await template.acquire()
        assert await template.acquire() is resource
        assert list(await asyncio.gather(template.acquire(), template.acquire())) == [
            resource,
            resource,
        ]
        assert await asyncio.wait_for(template.acquire(), timeout=5) is resource
        assert await asyncio.wait_for(template.acquire(), timeout=None) is resource
        assert await asyncio.shield(template.acquire()) is resource
        assert await asyncio.ensure_future(template.acquire()) is resource
        done, _ = await asyncio.wait([asyncio.ensure_future(template.acquire())])
        assert done.pop().result() is resource
        assert await template.acquire() is resource

    run(main)
    assert len(rec.created) == 1


def test_acquire_is_a_coroutine_function_on_every_python(rec: Recorder) -> None:
    """acquire() is a coroutine on every path and every Python, so create_task takes it."""
    template = ResourceTemplate(rec.make, rec.release)
    assert inspect.iscoroutinefunction(template.acquire)

    async def main() -> None:
        first = await asyncio.create_task(template.acquire())
        assert await asyncio.create_task(template.acquire()) is first  # the hot path
        forgotten = template.acquire()  # a forgotten await names acquire, not a private
        assert forgotten.__qualname__ == "ResourceTemplate.acquire"  # type: ignore[attr-defined]
        forgotten.close()

    run(main)
    assert len(rec.created) == 1


def test_hot_path_forgets_a_released_resource(rec: Recorder) -> None:
    """After release, the cached path does not hand out the released resource."""
    template = ResourceTemplate(rec.make, rec.release)

    async def main() -> None:
        old = await template.acquire()
        await template.release()
        new = await template.acquire()
        assert new is not old
        assert await template.acquire() is new

    run(main)
    assert len(rec.created) == 2


# -- release -----------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", LOOP_FACTORIES)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_release_runs_gracefully_on_the_loop(
    rec: Recorder, kind: str, factory: LoopFactory
) -> None:
    """release() calls the release function on the loop, and the next acquire starts afresh."""
    template = ResourceTemplate(rec.amake, rec.release if kind == "sync" else rec.arelease)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        resource = await template.acquire()
        await template.release()
        assert [(r.resource, r.loop) for r in rec.released] == [(resource, loop)]
        assert resourceloop.stats().graceful_releases == 1
        assert resourceloop.stats().resources_live == {}
        await template.release()  # nothing left: a no-op
        assert len(rec.released) == 1
        assert await template.acquire() is not resource

    run(main, factory)
    assert len(rec.created) == 2
    assert len(rec.released) == 2  # the second one by the close hook


def test_release_without_a_resource_is_a_no_op(rec: Recorder) -> None:
    """Releasing on a loop that holds nothing (or not this template) does nothing."""
    template = ResourceTemplate(rec.make, rec.release)
    other = ResourceTemplate(rec.make, rec.release, name="other")

    async def main() -> None:
        await template.release()  # an untracked loop
        await other.acquire()
        await template.release()  # a tracked loop without this template
        assert rec.released == []

    run(main)
    assert len(rec.released) == 1  # ``other``, by the close hook


def test_release_without_release_func_forgets_the_resource(rec: Recorder) -> None:
    """A template without release_func is released by forgetting the resource."""
    template = ResourceTemplate(rec.make)

    async def main() -> None:
        first = await template.acquire()
        await template.release()
        assert await template.acquire() is not first

    run(main)
    assert len(rec.created) == 2
    assert resourceloop.stats().graceful_releases == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_failing_release_is_raised_logged_and_counted(
    rec: Recorder, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing release is raised by release(), logged on "resourceloop" and counted."""

    def release(fake: Fake) -> None:
        rec.release(fake)
        raise BrokenPipeError("socket already gone")

    async def arelease(fake: Fake) -> None:
        await asyncio.sleep(0)
        release(fake)

    template = ResourceTemplate(
        rec.make, release if kind == "sync" else arelease, name="flaky-client"
    )

    async def main() -> None:
        first = await template.acquire()
        with pytest.raises(BrokenPipeError, match="socket already gone"):
            await template.release()
        assert resourceloop.stats().release_failures == 1
        # The failed resource is gone all the same: the next acquisition makes a new one.
        assert await template.acquire() is not first
        assert resourceloop.stats().resources_live == {"flaky-client": 1}

    with caplog.at_level(logging.ERROR, logger="resourceloop"):
        run(main)
    failures = [r for r in caplog.records if r.name == "resourceloop"]
    # One from release(), one from the close hook releasing the second resource.
    assert len(failures) == 2
    assert all("flaky-client" in r.getMessage() for r in failures)
    assert all(r.exc_info and r.exc_info[0] is BrokenPipeError for r in failures)
    assert resourceloop.stats().release_failures == 2
    assert len(rec.released) == 2


def test_release_of_a_closed_loop_is_forced(rec: Recorder, hook_disabled: None) -> None:
    """release(loop=closed) without the close hook releases forcefully, with a warning."""
    template = ResourceTemplate(rec.make, rec.release, force_release_func=rec.force, name="pool")
    with pytest.warns(UngracefulLoopWarning):
        loop, resource = closed_loop_in_thread(template)

    async def main() -> None:
        with pytest.warns(ForcedReleaseWarning, match="'pool'"):
            await template.release(loop=loop)
        await template.release(loop=loop)  # already released: no-op, no warning

    run(main)
    assert [f.resource for f in rec.forced] == [resource]
    assert rec.released == []  # a force_release_func takes precedence
    assert resourceloop.stats().forced_releases == 1


# -- purge -------------------------------------------------------------------------------------


def test_purge_force_releases_loops_closed_without_the_hook(
    rec: Recorder, caplog: pytest.LogCaptureFixture, hook_disabled: None
) -> None:
    """purge() releases a loop closed with the close hook disabled: forcefully, with a warning."""
    template = ResourceTemplate(rec.make, rec.release, force_release_func=rec.force, name="pool")
    with pytest.warns(UngracefulLoopWarning, match="close_hook=False"):
        loop, resource = closed_loop_in_thread(template)
    assert loop.is_closed()
    assert resourceloop.stats().resources_live == {"pool": 1}

    async def main() -> None:
        with pytest.warns(ForcedReleaseWarning, match="'pool'") as caught:
            await template.purge()
        # It returns only when the work is done.
        assert [f.resource for f in rec.forced] == [resource]
        assert len(caught) == 1
        await template.purge()  # nothing left: no second release, no warning

    run(main)
    assert len(rec.forced) == 1
    assert rec.released == []
    stats = resourceloop.stats()
    assert stats.forced_releases == 1
    assert stats.loops_tracked == 0
    assert stats.resources_live == {}
    # A warning outside pytest.warns would have been turned into an error, caught and logged.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_purge_releases_an_abandoned_loop_gracefully_on_it(
    rec: Recorder, record_warnings: list[warnings.WarningMessage]
) -> None:
    """A loop whose thread ended without closing it is released on that loop, gracefully."""
    template = ResourceTemplate(rec.make, rec.arelease, force_release_func=rec.force)
    loop, resource = closed_loop_in_thread(template, close=False)
    try:
        assert not loop.is_closed()

        async def main() -> None:
            await template.purge()
            assert [(r.resource, r.loop) for r in rec.released] == [(resource, loop)]

        run(main)
        assert rec.forced == []
        stats = resourceloop.stats()
        assert stats.graceful_releases == 1
        assert stats.forced_releases == 0
        assert stats.loops_tracked == 0
        assert record_warnings == []
    finally:
        loop.close()
    assert len(rec.released) == 1


def test_purge_never_blocks_the_calling_loop(rec: Recorder, hook_disabled: None) -> None:
    """While purge() waits for a slow forced release, the calling loop keeps running."""
    entered: asyncio.Event | None = None
    main_loop: asyncio.AbstractEventLoop | None = None
    go = threading.Event()
    outcome: list[bool] = []

    def slow_force(fake: Fake) -> None:
        assert main_loop is not None
        assert entered is not None
        main_loop.call_soon_threadsafe(entered.set)
        outcome.append(go.wait(30))  # only the calling loop can set it

    template = ResourceTemplate(rec.make, force_release_func=slow_force)
    with pytest.warns(UngracefulLoopWarning):
        closed_loop_in_thread(template)

    async def main() -> None:
        nonlocal entered, main_loop
        entered = asyncio.Event()
        main_loop = asyncio.get_running_loop()
        purge = asyncio.ensure_future(template.purge())
        await entered.wait()  # the loop runs while purge() is busy elsewhere
        assert not purge.done()
        go.set()
        await purge
        assert outcome == [True]

    with pytest.warns(ForcedReleaseWarning):
        run(main)
    assert resourceloop.stats().forced_releases == 1


def test_purge_waits_for_a_release_the_reaper_thread_has_under_way(
    rec: Recorder, hook_disabled: None
) -> None:
    """If the reaper thread is mid-release, purge() returns only after that release ends."""
    entered = threading.Event()
    go = threading.Event()
    order: list[str] = []

    def slow_force(fake: Fake) -> None:
        order.append(threading.current_thread().name)
        entered.set()
        assert go.wait(30)
        order.append("released")

    template = ResourceTemplate(rec.make, force_release_func=slow_force)
    with pytest.warns(UngracefulLoopWarning):
        closed_loop_in_thread(template)

    async def main() -> None:
        purge = asyncio.ensure_future(template.purge())
        # Bounded wait: purge() must still be waiting for the reaper's pass.
        done, _ = await asyncio.wait([purge], timeout=0.2)
        assert not done
        go.set()
        await purge
        order.append("purge returned")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resourceloop.configure()  # wakes the reaper thread for a pass now
        assert entered.wait(30)
        assert order == ["resourceloop-reaper"]
        run(main)
    assert [w.category for w in caught] == [ForcedReleaseWarning]
    assert order == ["resourceloop-reaper", "released", "purge returned"]
    assert resourceloop.stats().forced_releases == 1


def test_purge_many_times_with_closed_loops_never_deadlocks(
    rec: Recorder, record_warnings: list[warnings.WarningMessage], hook_disabled: None
) -> None:
    """Acquisitions and purges interleaved 100 times, each with a fresh closed loop present.

    Pyot's purge runs inside its acquisition lock and deadlocks on its 32nd call here.
    """
    pooled = ResourceTemplate(rec.make, rec.release, name="pooled")
    created: list[ResourceTemplate[Fake]] = []

    def closed_loop() -> None:
        closed_loop_in_thread(pooled)

    async def main() -> None:
        async with resourceloop.resource_manager():
            for i in range(100):
                await asyncio.to_thread(closed_loop)
                template = ResourceTemplate(rec.make, rec.release, name=f"fresh-{i}")
                created.append(template)
                await template.acquire()
                await pooled.purge()
                assert resourceloop.stats().forced_releases == i + 1

    run(main)
    categories = [w.category for w in record_warnings]
    assert categories.count(UngracefulLoopWarning) == 100
    assert categories.count(ForcedReleaseWarning) == 100
    assert len(categories) == 200
    assert resourceloop.stats().forced_releases == 100
    # The managed loop's own resources, "pooled" and the 100 fresh ones, gracefully on it.
    main_loop = rec.created[-1].loop
    graceful = [r for r in rec.released if r.loop is main_loop]
    assert len(graceful) == 101
    # The closed loops' ones, forcefully (the synchronous release_func stands in), off-loop.
    forced = [r for r in rec.released if r.loop is None]
    assert len(forced) == 100
    assert {r.thread.name for r in forced} == {"resourceloop-purge"}
    assert len(rec.released) == 201
    resourceloop.reap()  # the main loop closed without a hook, holding nothing now
    assert resourceloop.stats().loops_tracked == 0
    assert record_warnings[200:] == []


def test_purge_leaves_running_and_live_loops_alone(rec: Recorder) -> None:
    """Loops that are running, or idle with their thread alive, are not touched by purge()."""
    template = ResourceTemplate(rec.make, rec.release)
    with LoopThread() as remote:

        async def main() -> None:
            mine = await template.acquire()
            theirs = await template.acquire(loop=remote.loop)
            await template.purge()
            assert rec.released == []
            assert await template.acquire() is mine
            assert await template.acquire(loop=remote.loop) is theirs

        run(main)
    # Both released by their close hooks: ours by run(), the remote one by LoopThread.
    assert {r.loop for r in rec.released} == {c.loop for c in rec.created}
    assert len(rec.released) == 2


def test_creation_finishing_after_the_loop_began_releasing_is_released_on_the_loop(
    rec: Recorder,
) -> None:
    """A creation that completes after its loop started releasing everything (as the
    async-generator hook does in ``shutdown_asyncgens``) is released too, on the loop, and
    the waiter is told the loop is closing."""
    from resourceloop._registry import registry

    go = asyncio.Event()

    async def slow_make() -> Fake:
        await go.wait()
        return rec.make()

    template = ResourceTemplate(slow_make, rec.arelease, force_release_func=rec.force)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter = asyncio.ensure_future(template.acquire())
        await asyncio.sleep(0)  # the creation is now in flight
        state = registry.get(loop)
        assert state is not None
        batch = registry.begin_end(state)  # the first step of a loop's end
        assert batch is not None
        assert batch.items == []
        go.set()
        with pytest.raises(resourceloop.LoopClosedError, match="closing"):
            await waiter
        assert [(r.resource, r.loop) for r in rec.released] == [(rec.created[0], loop)]

    run(main)
    assert rec.forced == []
    assert resourceloop.stats().graceful_releases == 1


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked-loop", "tracked-loop"])
def test_remote_acquisition_queued_on_a_loop_that_closes_never_runs(
    rec: Recorder, tracked: bool
) -> None:
    """A call handed to a busy loop that then stops and closes fails, never runs, and is quiet.

    The loop's own thread stops and closes it with the call still queued. On an untracked loop
    nothing runs it: its coroutine never started, and is closed rather than left for the
    garbage collector to report as "never awaited". On a tracked one, the close hook's last
    run reaches it, and it fails as the loop is closing.
    """
    template = ResourceTemplate(rec.make, name="queued")
    other = ResourceTemplate(rec.make, name="other")
    loop = asyncio.new_event_loop()
    busy, go = threading.Event(), threading.Event()

    def serve() -> None:
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=serve, name="remote-loop")
    thread.start()
    if tracked:  # the loop is known to the runtime: its close hook releases and fails waiters
        asyncio.run_coroutine_threadsafe(other.acquire(), loop).result(10)

    def block() -> None:
        busy.set()
        assert go.wait(10)
        loop.stop()  # the queued call is never reached by run_forever()

    loop.call_soon_threadsafe(block)
    assert busy.wait(10)

    async def main() -> None:
        call = asyncio.ensure_future(template.acquire(loop=loop))
        await asyncio.sleep(0)  # handed over: queued behind block()
        go.set()
        await asyncio.to_thread(thread.join, 10)
        assert loop.is_closed()
        with pytest.raises(LoopClosedError, match="'queued'"):
            await call

    with record_text() as warned:
        run(main)
        gc.collect()
    assert [w.message for w in warned if "never awaited" in w.message] == []
    assert len(rec.created) == (1 if tracked else 0)
    assert resourceloop.stats().acquisitions == len(rec.created)


def test_a_release_func_returning_a_callable_is_a_failure_naming_the_template(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``lambda r: r.close`` (the call's parentheses missing) releases nothing: a TypeError
    naming the template, counted as a failure, never as a release."""
    from resourceloop import resource_manager
    from resourceloop._compat import ExceptionGroup

    closed: list[object] = []

    class Client:
        def close(self) -> None:  # pragma: no cover - the bug under test never calls it
            closed.append(self)

    template = ResourceTemplate(Client, lambda r: r.close, name="forgot-the-call")

    async def main() -> None:
        async with resource_manager():
            await template.acquire()

    with pytest.raises(ExceptionGroup) as info:
        run(main)
    [error] = info.value.exceptions
    assert isinstance(error, TypeError)
    assert "'forgot-the-call'" in str(error)
    assert "callable" in str(error)
    assert closed == []
    snap = resourceloop.stats()
    assert (snap.release_failures, snap.graceful_releases, snap.forced_releases) == (1, 0, 0)
    assert snap.resources_live == {}
