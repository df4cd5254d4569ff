"""What Python 3.14 and 3.15 change under resourceloop, checked on every Python from 3.10.

Each test names the change it covers: event-loop policies deprecated (3.14, gone in 3.16),
``asyncio.get_event_loop()`` raising without a loop (3.14), ``Runner.run()`` taking any
awaitable (3.14), task factories receiving every keyword of ``create_task`` (3.14),
thread-safe handles from ``call_soon_threadsafe`` (3.14), and, from 3.15, the garbage collector
clearing plain weak references only after finalizers have run. They use the public API plus
``reap()`` and ``stats()`` only, so they hold for any implementation of the runtime. A test
that needs a newer Python than the one running is skipped with the version it needs.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import os
import platform
import re
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, reap, resource_manager, stats
from resourceloop.sync import async_to_sync
from resourceloop.warnings import ForcedReleaseWarning
from tests._env import CHECKOUT
from tests._fakes import Res
from tests._loops import HAS_UVLOOP, LOOP_FACTORIES, LoopFactory, run, uvloop
from tests._warnings import record_text

needs_314 = pytest.mark.skipif(sys.version_info < (3, 14), reason="new in Python 3.14")
needs_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="new in Python 3.12")


pytestmark = pytest.mark.usefixtures("slow_reaper")  # reap() drives every pass here


class Books:
    """A template whose releases record where they ran: graceful (on which loop) or forced."""

    def __init__(self) -> None:
        self.graceful: list[tuple[Res, bool]] = []  # (resource, released on its own loop)
        self.forced: list[Res] = []

        async def release(r: Res) -> None:
            self.graceful.append((r, asyncio.get_running_loop() is r.made_on()))

        self.template = ResourceTemplate(
            Res, release, name="t", force_release_func=self.forced.append
        )

    def acquire(self, loop: asyncio.AbstractEventLoop | None = None) -> Awaitable[Res]:
        return self.template.acquire(loop)

    def released_gracefully_once(self, r: Res) -> bool:
        snap = stats()
        return (
            self.graceful == [(r, True)]
            and self.forced == []
            and (snap.graceful_releases, snap.forced_releases, snap.loops_tracked) == (1, 0, 0)
        )


# -- event-loop policies: deprecated in 3.14, removed in 3.16 -----------------------------------

#: Where the project's own code, tests, examples and documentation live.
_SOURCES = ("resourceloop", "tests", "examples", "benchmarks", "docs")
_POLICY = re.compile(r"event_loop_policy|EventLoopPolicy|uvloop\.install\b")


THIS_FILE = Path(__file__).resolve()


def _project_files(*suffixes: str) -> Iterator[Path]:
    for top in (*_SOURCES, "README.md", "noxfile.py"):
        path = CHECKOUT / top
        if path.is_file():
            if path.suffix in suffixes:
                yield path
        else:
            yield from (p for p in sorted(path.rglob("*")) if p.suffix in suffixes)


def test_no_event_loop_policy_anywhere() -> None:
    """No code, test, example or page sets, gets or recommends an event-loop policy.

    uvloop is used through ``uvloop.new_event_loop`` as a ``loop_factory``, never through
    ``uvloop.install()`` (which sets a policy). This file is left out: it spells the names.
    """
    offenders = [
        f"{path.relative_to(CHECKOUT)}:{number}: {line.strip()}"
        for path in _project_files(".py", ".md")
        if path.resolve() != THIS_FILE
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _POLICY.search(line)
    ]
    assert offenders == []


def test_no_get_event_loop_call_in_code() -> None:
    """No module, test or example calls ``asyncio.get_event_loop()`` (3.14: raises, no loop).

    This file is left out: it calls it once, to show that it raises.
    """
    calls = []
    for path in _project_files(".py"):
        if path.resolve() == THIS_FILE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        calls += [
            f"{path.relative_to(CHECKOUT)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "get_event_loop"
        ]
    assert calls == []


def test_the_api_needs_no_current_loop() -> None:
    """With no loop in the thread, the sync API works and leaves no current loop behind.

    ``asyncio.get_event_loop()`` raises there (in the main thread too from 3.14), so nothing
    of ours may rely on it; ``async_to_sync`` runs the call on a loop of its own.
    """
    books = Books()
    seen: dict[str, Any] = {}

    async def work() -> bool:
        r = await books.acquire()
        return r.made_on() is asyncio.get_running_loop()

    def thread() -> None:
        resourceloop.configure(release_timeout=5.0)
        seen["on_its_loop"] = async_to_sync(work)()
        reap()
        seen["stats"] = stats()
        seen["live"] = resourceloop.live_resources()
        with pytest.raises(RuntimeError, match="no current event loop"):
            asyncio.get_event_loop()
        seen["raised"] = True

    worker = threading.Thread(target=thread)
    worker.start()
    worker.join()
    assert seen["raised"]
    assert seen["on_its_loop"]
    assert seen["live"] == []
    [(r, own)] = books.graceful
    assert own
    assert books.released_gracefully_once(r)


# -- Runner.run() takes any awaitable (3.14) --------------------------------------------------


class _Acquiring:
    """An awaitable that is not a coroutine: it acquires the resource and returns it."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def __await__(self) -> Generator[Any, None, Res]:
        return (yield from self._acquire().__await__())

    async def _acquire(self) -> Res:
        return await self.books.acquire()


@needs_314
def test_runner_run_accepts_an_awaitable_and_the_close_hook_still_releases() -> None:
    """``Runner.run(awaitable)``: the resource is released on the loop when the runner closes."""
    books = Books()
    if sys.version_info >= (3, 14):  # for mypy: the marker skips older Pythons
        with asyncio.Runner() as runner:
            r = runner.run(_Acquiring(books))  # type: ignore[arg-type, unused-ignore]
            assert books.graceful == []
        assert books.released_gracefully_once(r)


# -- task factories receive every keyword of create_task (3.13.3, 3.14) -----------------------


def _passing_factory(seen: list[set[str]]) -> Callable[..., asyncio.Task[Any]]:
    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        seen.append(set(kwargs))
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


def _eager_factory(seen: list[set[str]]) -> Callable[..., asyncio.Task[Any]]:
    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        seen.append(set(kwargs))
        if sys.version_info >= (3, 12):  # for mypy: the marker skips older Pythons
            return asyncio.create_eager_task_factory(asyncio.Task)(loop, coro, **kwargs)
        raise AssertionError("eager tasks are new in 3.12")

    return factory


@pytest.mark.parametrize(
    "make_factory",
    [
        pytest.param(_passing_factory, id="passing-every-keyword"),
        pytest.param(_eager_factory, id="eager", marks=needs_312),
    ],
)
@pytest.mark.parametrize("closing", ["close", "manager"])
def test_loop_with_a_task_factory_is_released_gracefully(
    make_factory: Callable[[list[set[str]]], Callable[..., asyncio.Task[Any]]], closing: str
) -> None:
    """A loop whose task factory forwards every keyword still gets graceful releases.

    From 3.14 ``create_task`` hands the factory every keyword it was given (``name``,
    ``context``, ``eager_start``), so a factory must accept them all; resourceloop's own work
    on the loop goes through it or around it, and either way each resource is released once,
    on its loop. Before 3.14 the factory gets fewer keywords; the release is the same.
    """
    books = Books()
    seen: list[set[str]] = []
    loop = asyncio.new_event_loop()
    loop.set_task_factory(make_factory(seen))
    keywords: dict[str, Any] = {"name": "acquiring"}
    if sys.version_info >= (3, 11):
        keywords["context"] = None
    if sys.version_info >= (3, 14):
        keywords["eager_start"] = False

    async def main() -> Res:
        task = asyncio.get_running_loop().create_task(_Acquiring(books)._acquire(), **keywords)
        r = await task
        if closing == "manager":
            async with resource_manager():
                assert await books.acquire() is r
        return r

    try:
        r = loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert seen  # the factory made the tasks
    if sys.version_info >= (3, 14):
        assert set(keywords) in seen  # it got every keyword given to create_task
    assert books.released_gracefully_once(r)


# -- call_soon_threadsafe returns a thread-safe handle (3.14) -----------------------------------


@pytest.mark.parametrize("factory", LOOP_FACTORIES)
def test_threadsafe_handles_and_cross_thread_acquisition(factory: LoopFactory) -> None:
    """Cross-thread work and handles cancelled from another thread leave releases graceful.

    A loop runs in its own thread; another loop acquires on it (``acquire(loop=...)`` crosses
    with ``call_soon_threadsafe``), a callback scheduled from a third thread is cancelled there
    through its handle, and the owner then closes its loop: one graceful release, on its loop.
    """
    books = Books()
    ready, finish = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def owner() -> None:
        loop = factory()
        box["loop"] = loop

        async def serve() -> None:
            box["mine"] = await books.acquire()
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, finish.wait, 30)

        try:
            loop.run_until_complete(serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        assert ready.wait(30)
        loop: asyncio.AbstractEventLoop = box["loop"]
        ran: list[str] = []
        # Hold the loop's thread inside a callback, so that it cannot run the next one before
        # this thread has cancelled it.
        held, let_go = threading.Event(), threading.Event()

        def hold() -> None:
            held.set()
            let_go.wait(30)

        loop.call_soon_threadsafe(hold)
        assert held.wait(30)
        handle = loop.call_soon_threadsafe(ran.append, "cancelled too late")
        handle.cancel()  # from a thread that is not the loop's: thread-safe from 3.14
        assert handle.cancelled()
        let_go.set()

        async def from_another_loop() -> Res:
            return await books.acquire(loop=loop)

        assert run(from_another_loop) is box["mine"]
    finally:
        finish.set()
        thread.join()
    assert ran == []
    assert books.released_gracefully_once(box["mine"])


# -- 3.15: plain weak references outlive the finalizers of cyclic garbage ---------------------

#: On 3.15 the cyclic collector clears weak references without callbacks after it has run
#: finalizers, no longer before; our close hook's wrapper holds its loop that way.
PLAIN_WEAKREF_ALIVE_IN_DEL = sys.version_info >= (3, 15)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts fds in /proc/self/fd")
@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's collector")
def test_collected_unclosed_loop_still_closes_its_selector_and_self_pipe() -> None:
    """A loop dropped unclosed is closed for real by its ``__del__`` through our close hook.

    asyncio's ``BaseEventLoop.__del__`` calls ``self.close()``, which is our wrapper on the
    instance. The wrapper must reach the real ``close`` whether its weak reference to the loop
    is already dead (up to 3.14) or still alive (3.15) at that moment, so that the selector and
    the self-pipe are closed while the loop is being finalized, not whenever the objects happen
    to be freed. The loop here resurrects itself in ``__del__`` to show exactly that: it is
    closed and its fds are gone although the object still exists. Its resource, whose loop can
    no longer run, is then released forcefully, once, by the next reaper pass.
    """
    books = Books()
    in_del: list[bool] = []
    resurrected: list[asyncio.AbstractEventLoop] = []

    class Probed(asyncio.SelectorEventLoop):
        probe: weakref.ReferenceType[asyncio.AbstractEventLoop]

        def __del__(self) -> None:
            in_del.append(type(self).probe() is not None)
            super().__del__()
            resurrected.append(self)

    baseline = _open_fds()
    loop = Probed()
    Probed.probe = weakref.ref(loop)
    # The self-pipe's sockets are part of the same garbage; finalized first, they would close
    # their own fds and make the loop's close() fail, with or without resourceloop.
    pinned = [vars(loop)[name] for name in ("_ssock", "_csock") if name in vars(loop)]
    r = loop.run_until_complete(books.acquire())
    assert _open_fds() > baseline
    del loop
    with record_text() as caught:
        for _ in range(3):
            gc.collect()
    assert in_del == [PLAIN_WEAKREF_ALIVE_IN_DEL]
    [collected] = resurrected
    assert collected.is_closed()
    assert _open_fds() == baseline
    assert [(w.category, w.message.split(" <")[0]) for w in caught] == [
        (ResourceWarning, "unclosed event loop")
    ]
    assert books.graceful == []  # never run from inside a finalizer
    with pytest.warns(ForcedReleaseWarning, match="garbage-collected"):
        reap()
    assert books.forced == [r]
    snap = stats()
    assert (snap.forced_releases, snap.graceful_releases, snap.loops_tracked) == (1, 0, 0)
    del collected, pinned
    resurrected.clear()


# -- uvloop: cp314 and cp315 wheels exist from 0.23 -------------------------------------------


def test_uvloop_is_installed_wherever_it_can_be() -> None:
    """On CPython on Linux or macOS the test extra installs uvloop, so its tests never skip."""
    if sys.platform not in {"linux", "darwin"} or platform.python_implementation() != "CPython":
        pytest.skip("uvloop publishes wheels for CPython on Linux and macOS only")
    assert HAS_UVLOOP, "uvloop is missing: pip install -e '.[test]'"


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")
@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
def test_uvloop_as_a_loop_factory_is_released_gracefully() -> None:
    """``asyncio.Runner(loop_factory=uvloop.new_event_loop)``, the policy-free way to use it."""
    books = Books()
    if sys.version_info >= (3, 11):  # for mypy: the marker skips 3.10
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            r = runner.run(_Acquiring(books)._acquire())
            assert isinstance(runner.get_loop(), uvloop.Loop)
        assert books.released_gracefully_once(r)
