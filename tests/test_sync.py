"""Tests for `resourceloop.sync`: `async_to_sync` and `sync_to_async`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import resourceloop
from resourceloop import ResourceTemplate, resource_manager
from resourceloop.sync import async_to_sync, sync_to_async
from tests._fakes import Fake, Recorder

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


# -- async_to_sync --------------------------------------------------------------------------


async def add(a: int, b: int = 1) -> int:
    """Add two numbers, asynchronously."""
    await asyncio.sleep(0)
    return a + b


def test_async_to_sync_returns_result_and_keeps_metadata() -> None:
    """The wrapper returns the coroutine's result and keeps name, doc and signature."""
    blocking = async_to_sync(add)
    total: int = blocking(2, b=3)  # mypy checks the ParamSpec-typed signature here
    assert total == 5
    assert blocking.__name__ == "add"
    assert blocking.__doc__ == "Add two numbers, asynchronously."
    assert inspect.signature(blocking) == inspect.signature(add)
    assert blocking.__wrapped__ is add  # type: ignore[attr-defined]


def test_async_to_sync_as_decorator_propagates_exceptions() -> None:
    """Used as a decorator; the coroutine's exception reaches the caller unchanged."""

    @async_to_sync
    async def boom(message: str) -> None:
        raise LookupError(message)

    with pytest.raises(LookupError, match="nope"):
        boom("nope")


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x * 2


async def agen() -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    "func",
    [lambda: 1, len, 42, None, agen, functools.partial(lambda x: x, 1)],
    ids=["lambda", "builtin", "int", "None", "asyncgen", "partial-sync"],
)
def test_async_to_sync_rejects_non_coroutine_functions(func: Any) -> None:
    """Anything but a coroutine function is a TypeError."""
    with pytest.raises(TypeError, match="coroutine function"):
        async_to_sync(func)


def test_async_to_sync_accepts_async_callables_and_partials() -> None:
    """An object with `async def __call__` and a partial of a coroutine function work."""
    assert async_to_sync(AsyncCallable())(4) == 8
    assert async_to_sync(functools.partial(add, 10))(b=5) == 15


def test_each_call_runs_on_a_new_loop_that_is_closed() -> None:
    """Every call gets a fresh loop, closed when the call returns."""
    loops: list[asyncio.AbstractEventLoop] = []

    @async_to_sync
    async def which() -> None:
        loops.append(asyncio.get_running_loop())

    which()
    which()
    assert loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)


def test_resources_released_gracefully_before_the_loop_closes(rec: Recorder) -> None:
    """Unmanaged code: the call's resource is released on its loop while it is still open."""
    template = ResourceTemplate(rec.make, rec.arelease)

    @async_to_sync
    async def use() -> Fake:
        return await template.acquire()

    fakes = [use() for _ in range(3)]
    for fake in fakes:
        releases = rec.released_of(fake)
        assert len(releases) == 1
        assert releases[0].on_own_loop  # on the loop it was made on
        assert releases[0].loop_closed is False
        assert fake.loop is not None
        assert fake.loop.is_closed()
    stats = resourceloop.stats()
    assert (stats.graceful_releases, stats.forced_releases, stats.loops_tracked) == (3, 0, 0)


def test_from_many_threads(rec: Recorder) -> None:
    """Called from a pool of threads, each call has its own loop and resource, all released."""
    template = ResourceTemplate(rec.make, rec.arelease)

    @async_to_sync
    async def use(i: int) -> tuple[int, Fake]:
        return i, await template.acquire()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(use, range(40)))
    assert [i for i, _ in results] == list(range(40))
    fakes = [fake for _, fake in results]
    assert len({id(fake.loop) for fake in fakes}) == len({id(f) for f in fakes})
    assert all([c.on_own_loop for c in rec.released_of(f)] == [True] for f in fakes)
    assert resourceloop.stats().graceful_releases == 40


@pytest.mark.asyncio
async def test_from_a_thread_running_a_loop(rec: Recorder) -> None:
    """Inside a running loop the call runs on a new loop in a worker thread, not failing."""
    caller_loop = asyncio.get_running_loop()
    caller_thread = threading.current_thread()
    template = ResourceTemplate(rec.make, rec.arelease)
    seen: dict[str, Any] = {}

    @async_to_sync
    async def nested() -> Fake:
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.current_thread()
        return await template.acquire()

    fake = nested()
    assert seen["loop"] is not caller_loop
    assert seen["thread"] is not caller_thread
    assert not seen["thread"].is_alive()
    releases = rec.released_of(fake)
    assert len(releases) == 1
    assert releases[0].loop_closed is False
    assert not caller_loop.is_closed()


def test_ctrl_c_while_waiting_inside_a_running_loop_cancels_the_call(rec: Recorder) -> None:
    """An exception raised into the waiting caller (as Ctrl-C is) cancels the worker's call.

    The call does not run on in its worker thread with nobody waiting for it: it is
    cancelled on its own loop, the worker ends, and the caller gets the exception.
    """
    import ctypes

    started, cancelled = threading.Event(), threading.Event()
    template = ResourceTemplate(rec.make, rec.arelease)
    held: list[Fake] = []

    @async_to_sync
    async def forever() -> None:
        held.append(await template.acquire())
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    caught: list[BaseException] = []

    def caller() -> None:
        async def main() -> None:
            forever()  # blocking, from a running loop: the call runs in a worker thread

        try:
            asyncio.run(main())
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(30)
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    thread.join(30)
    assert not thread.is_alive()
    assert [type(exc) for exc in caught] == [KeyboardInterrupt]
    assert cancelled.is_set()
    workers = [t for t in threading.enumerate() if t.name.startswith("resourceloop-async")]
    assert [t for t in workers if t.is_alive()] == []  # joined (perhaps not yet unlisted)
    assert [len(rec.released_of(fake)) for fake in held] == [1]  # on its loop as it closed


@pytest.mark.asyncio
async def test_from_a_running_loop_propagates_exceptions() -> None:
    """The worker thread's exception reaches the caller."""

    @async_to_sync
    async def boom() -> None:
        raise KeyError("in worker")

    with pytest.raises(KeyError, match="in worker"):
        boom()


@pytest.mark.parametrize("in_loop", [False, True])
def test_async_to_sync_copies_contextvars(in_loop: bool) -> None:
    """The caller's context variables are visible inside the call."""

    @async_to_sync
    async def read() -> str:
        return request_id.get()

    def call() -> str:
        request_id.set("abc")
        if not in_loop:
            return read()

        async def main() -> str:
            return read()

        return asyncio.run(main())

    assert contextvars.copy_context().run(call) == "abc"


# -- sync_to_async --------------------------------------------------------------------------


def blocking_add(a: int, b: int = 1) -> int:
    """Add two numbers, blocking."""
    return a + b


@pytest.mark.asyncio
async def test_sync_to_async_runs_in_a_thread() -> None:
    """The function runs outside the loop's thread and its result is awaited."""
    threads: list[threading.Thread] = []

    @sync_to_async
    def where(x: int) -> int:
        threads.append(threading.current_thread())
        return x + 1

    assert await where(1) == 2
    assert threads[0] is not threading.current_thread()


@pytest.mark.asyncio
async def test_sync_to_async_keeps_metadata_and_types() -> None:
    """The wrapper keeps name, doc and signature; it is a coroutine function."""
    wrapped = sync_to_async(blocking_add)
    total: int = await wrapped(2, b=5)  # mypy checks the ParamSpec-typed signature here
    assert total == 7
    assert wrapped.__name__ == "blocking_add"
    assert wrapped.__doc__ == "Add two numbers, blocking."
    assert inspect.signature(wrapped) == inspect.signature(blocking_add)
    assert inspect.iscoroutinefunction(wrapped)


@pytest.mark.asyncio
async def test_sync_to_async_propagates_exceptions_and_contextvars() -> None:
    """Exceptions come back; context variables go along."""
    request_id.set("xyz")

    @sync_to_async
    def read_or_fail(fail: bool) -> str:
        if fail:
            raise ValueError("sync failure")
        return request_id.get()

    assert await read_or_fail(False) == "xyz"
    with pytest.raises(ValueError, match="sync failure"):
        await read_or_fail(True)


@pytest.mark.parametrize(
    "func",
    [add, AsyncCallable(), agen, 42, None],
    ids=["coro", "async-call", "agen", "int", "None"],
)
def test_sync_to_async_rejects(func: Any) -> None:
    """Coroutine functions, async callables, async generators and non-callables are refused."""
    with pytest.raises(TypeError):
        sync_to_async(func)


def test_round_trip() -> None:
    """sync -> async -> sync: a blocking function run from async code run from sync code."""

    @async_to_sync
    async def main() -> int:
        return await sync_to_async(blocking_add)(40, 2)

    assert main() == 42


# -- inside asgiref's sync_to_async: the server's own loop ----------------------------------------


def test_async_to_sync_in_asgiref_thread_runs_on_the_outer_loop() -> None:
    """As asgiref does: the server's loop, its resource reused, released once when it closes.

    Before, each call ran on a fresh loop with a fresh resource (2 for 2 calls).
    """
    asgiref_sync = pytest.importorskip("asgiref.sync")
    released: list[tuple[str, bool]] = []
    outer: list[asyncio.AbstractEventLoop] = []

    async def make() -> str:
        return f"client-{len(released)}"

    template = ResourceTemplate(
        make,
        lambda c: released.append((c, asyncio.get_running_loop() is outer[0])),
        name="asgi-client",
    )

    @async_to_sync
    async def fetch() -> tuple[bool, str]:
        async with resource_manager():  # acquires; must release nothing on the shared loop
            client = await template.acquire()
            # A thread-sensitive sync call inside: asgiref runs it in the waiting thread.
            here = await asgiref_sync.sync_to_async(threading.get_ident)()
            return asyncio.get_running_loop() is outer[0], f"{client} {here}"

    def view() -> list[tuple[bool, str]]:
        return [fetch(), fetch()]

    async def server() -> list[tuple[bool, str]]:
        outer.append(asyncio.get_running_loop())
        results: list[tuple[bool, str]] = await asgiref_sync.sync_to_async(view)()
        return results

    results = asyncio.run(server())
    assert [on_outer for on_outer, _ in results] == [True, True]
    assert len({text.split()[0] for _, text in results}) == 1  # one client, reused
    assert released == [("client-0", True)]  # released once, on the server's loop
