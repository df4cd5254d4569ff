"""Tests for `resourceloop.queue`: the seed example's worker queue."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resourceloop.queue import Queue


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of the running loop other than the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}


async def value(result: Any, yields: int = 0) -> Any:
    for _ in range(yields):
        await asyncio.sleep(0)
    return result


async def fail(message: str) -> None:
    raise ValueError(message)


class RecordingHandler:
    """An exception handler that keeps its calls (not ``_fakes.Recorder``: no resources here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[type[BaseException], BaseException, TracebackType | None]] = []

    def __call__(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        self.calls.append((exc_type, exc, tb))


# -- construction ------------------------------------------------------------------------------


def test_defaults_match_pyot() -> None:
    """25 workers and a bound of twice the workers, as Pyot's Queue."""
    queue = Queue()
    assert (queue.workers, queue.maxsize) == (25, 50)
    assert Queue(workers=3).maxsize == 6
    assert Queue(maxsize=0).maxsize == 0
    assert "active=False" in repr(queue)


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one_is_value_error(workers: int) -> None:
    """`workers < 1` is a ValueError."""
    with pytest.raises(ValueError, match="workers"):
        Queue(workers=workers)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"workers": 2.5}, TypeError),
        ({"workers": True}, TypeError),
        ({"maxsize": -1}, ValueError),
        ({"maxsize": "3"}, TypeError),
        ({"exception_handler": 3}, TypeError),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Wrong types and ranges are refused at construction."""
    with pytest.raises(error):
        Queue(**kwargs)


# -- results -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_join_returns_results_in_put_order() -> None:
    """Results come back in put order although they complete in reverse order."""
    async with Queue(workers=5) as queue:
        for i in range(5):
            await queue.put(value(i, yields=10 - 2 * i))  # the last one finishes first
        assert await queue.join() == [0, 1, 2, 3, 4]
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_none_and_exceptions_are_not_collected() -> None:
    """`None` results, raised and returned exceptions are left out; raised ones are handled."""
    handler = RecordingHandler()
    async with Queue(workers=2, exception_handler=handler) as queue:
        await queue.put(value("a"))
        await queue.put(value(None))
        await queue.put(fail("boom"))
        await queue.put(value(KeyError("returned")))
        await queue.put(value("b"))
        assert await queue.join() == ["a", "b"]
    assert [(t, str(e)) for t, e, _ in handler.calls] == [(ValueError, "boom")]
    assert handler.calls[0][2] is not None  # the traceback


@pytest.mark.asyncio
async def test_join_hands_over_results() -> None:
    """A second join returns only what was put after the first."""
    async with Queue(workers=2) as queue:
        await queue.put(value(1))
        assert await queue.join() == [1]
        await queue.put(value(2))
        await queue.put(value(3))
        assert await queue.join(int) == [2, 3]
        assert await queue.join() == []


@pytest.mark.asyncio
async def test_accepts_tasks_futures_and_awaitables() -> None:
    """Any awaitable works: a coroutine, a task, a future, an object with __await__."""

    class Awaitable:
        def __await__(self) -> Any:
            return value("custom").__await__()

    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    loop.call_soon(future.set_result, "future")
    async with Queue(workers=2) as queue:
        await queue.put(value("coroutine"))
        await queue.put(asyncio.ensure_future(value("task")))
        await queue.put(future)
        await queue.put(Awaitable())
        assert await queue.join() == ["coroutine", "task", "future", "custom"]


@pytest.mark.asyncio
async def test_exit_waits_for_the_queue() -> None:
    """Leaving the block after a successful body runs every item put."""
    done: list[int] = []

    async def record(i: int) -> None:
        await asyncio.sleep(0)
        done.append(i)

    async with Queue(workers=2) as queue:
        for i in range(6):
            await queue.put(record(i))
    assert sorted(done) == list(range(6))
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_at_most_workers_items_run_at_once() -> None:
    """`workers` bounds the concurrency."""
    running = 0
    peak = 0

    async def track() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1

    async with Queue(workers=3, maxsize=0) as queue:
        for _ in range(12):
            await queue.put(track())
        await queue.join()
    assert peak == 3


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(), st.just("raise")), st.integers(0, 4)),
        max_size=20,
    ),
    st.integers(1, 4),
    st.integers(0, 3),
)
def test_results_property(items: list[tuple[Any, int]], workers: int, maxsize: int) -> None:
    """For any mix of values, Nones and failures, join() is the non-None values in order."""
    handler = RecordingHandler()

    async def item(result: Any, yields: int) -> Any:
        for _ in range(yields):
            await asyncio.sleep(0)
        if result == "raise":
            raise ValueError("x")
        return result

    async def main() -> list[Any]:
        async with Queue(workers=workers, maxsize=maxsize, exception_handler=handler) as q:
            for result, yields in items:
                await q.put(item(result, yields))
            results = await q.join()
        assert other_tasks() == set()
        return results

    expected = [r for r, _ in items if r is not None and r != "raise"]
    assert asyncio.run(main()) == expected
    assert len(handler.calls) == sum(1 for r, _ in items if r == "raise")


# -- put -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_put_rejects_non_awaitables() -> None:
    """A non-awaitable is a TypeError that says what to do."""
    async with Queue() as queue:
        with pytest.raises(TypeError, match="forget to call"):
            await queue.put(value)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_put_waits_while_full() -> None:
    """With every worker busy and the queue full, put() waits for room."""
    gate = asyncio.Event()

    async def blocked() -> str:
        await gate.wait()
        return "x"

    async with Queue(workers=1, maxsize=1) as queue:
        await queue.put(blocked())  # taken by the worker
        await asyncio.sleep(0)
        await queue.put(blocked())  # waits in the queue
        third = asyncio.ensure_future(queue.put(value("y")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not third.done()
        gate.set()
        await third
        assert await queue.join() == ["x", "x", "y"]


@pytest.mark.asyncio
async def test_cancelled_put_closes_its_coroutine() -> None:
    """A put() cancelled while waiting for room closes the coroutine it was given."""
    gate = asyncio.Event()
    async with Queue(workers=1, maxsize=1) as queue:
        await queue.put(gate.wait())
        await asyncio.sleep(0)
        await queue.put(gate.wait())
        pending = value("never")
        put = asyncio.ensure_future(queue.put(pending))
        await asyncio.sleep(0)
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert inspect.getcoroutinestate(pending) == inspect.CORO_CLOSED
        gate.set()


@pytest.mark.asyncio
async def test_put_and_join_outside_the_block() -> None:
    """Before entering or after leaving: RuntimeError, and the coroutine is closed."""
    queue = Queue()
    early = value(1)
    with pytest.raises(RuntimeError, match="not active"):
        await queue.put(early)
    assert inspect.getcoroutinestate(early) == inspect.CORO_CLOSED
    with pytest.raises(RuntimeError, match="not active"):
        await queue.join()
    async with queue:
        pass
    late = value(2)
    with pytest.raises(RuntimeError, match="not active"):
        await queue.put(late)
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED


@pytest.mark.asyncio
async def test_reentry() -> None:
    """Entering an active queue is an error; it can be entered again after it exits."""
    queue = Queue(workers=1)
    async with queue:
        with pytest.raises(RuntimeError, match="already active"):
            await queue.__aenter__()
        await queue.put(value(1))
        assert await queue.join() == [1]
    async with queue:
        await queue.put(value(2))
        assert await queue.join() == [2]
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_delay() -> None:
    """Pyot's `delay` argument still works."""
    async with Queue(workers=1) as queue:
        await queue.put(value(1), delay=0.001)
        assert await queue.join() == [1]


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_handler_logs_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Without a handler, a failing item is logged on `resourceloop` with its traceback."""
    with caplog.at_level(logging.ERROR, logger="resourceloop"):
        async with Queue(workers=1) as queue:
            await queue.put(fail("logged"))
            await queue.put(value(1))
            assert await queue.join() == [1]
    [record] = [r for r in caplog.records if r.name == "resourceloop"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "logged"
    assert record.exc_info[2] is not None


@pytest.mark.asyncio
async def test_failing_handler_is_logged_and_worker_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises is logged; the single worker goes on with the next item."""

    def broken(*args: Any) -> None:
        raise RuntimeError("handler broke")

    with caplog.at_level(logging.ERROR, logger="resourceloop"):
        async with Queue(workers=1, exception_handler=broken) as queue:
            await queue.put(fail("first"))
            await queue.put(value("second"))
            assert await queue.join() == ["second"]
    assert any("exception_handler" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_item_cancelled_by_someone_else_is_handled() -> None:
    """A task cancelled elsewhere is reported to the handler; the worker carries on."""
    handler = RecordingHandler()
    never = asyncio.Event()
    victim = asyncio.ensure_future(never.wait())
    async with Queue(workers=1, exception_handler=handler) as queue:
        await queue.put(victim)
        await asyncio.sleep(0)
        victim.cancel()
        await queue.put(value("after"))
        assert await queue.join() == ["after"]
    assert [t for t, _, _ in handler.calls] == [asyncio.CancelledError]


# -- leaving early -------------------------------------------------------------------------------


def started_and_pending() -> tuple[list[Coroutine[Any, Any, Any]], asyncio.Event]:
    gate = asyncio.Event()
    return [gate.wait() for _ in range(4)], gate


@pytest.mark.asyncio
async def test_body_error_closes_unstarted_and_cancels_running() -> None:
    """If the body raises, nothing is left behind: no task, no un-awaited coroutine."""
    coros, _ = started_and_pending()
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def body() -> None:
        async with Queue(workers=2, maxsize=0) as queue:
            for coro in coros:
                await queue.put(coro)
            await queue.put(future)
            await asyncio.sleep(0)  # the first two start
            raise KeyError("body")

    with pytest.raises(KeyError):
        await body()
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    assert future.cancelled()
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_future_of_another_loop_is_reported_not_touched() -> None:
    """Another loop's future cannot run here: the handler hears of it; it is left alone."""
    handler = RecordingHandler()
    other = asyncio.new_event_loop()
    try:
        foreign: asyncio.Future[None] = other.create_future()
        async with Queue(workers=1, exception_handler=handler) as queue:
            await queue.put(foreign)
            assert await queue.join() == []
        assert [t for t, _, _ in handler.calls] == [ValueError]
        assert not foreign.done()
        parked: asyncio.Future[None] = other.create_future()

        async def leave_early() -> None:
            async with Queue(workers=1, maxsize=0) as queue:
                await queue.put(asyncio.Event().wait())
                await queue.put(parked)
                raise KeyError("leave early")

        with pytest.raises(KeyError):
            await leave_early()
        assert not parked.done()
    finally:
        other.close()


@pytest.mark.asyncio
async def test_body_cancelled_leaves_nothing_behind() -> None:
    """If the body is cancelled, items are discarded and the cancellation propagates."""
    coros, _ = started_and_pending()
    entered = asyncio.Event()

    async def body() -> None:
        async with Queue(workers=2, maxsize=0) as queue:
            for coro in coros:
                await queue.put(coro)
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_cancelled_while_waiting_for_the_queue() -> None:
    """Cancelled while the exit waits for the queue: abort the rest, re-raise."""
    coros, _ = started_and_pending()
    exiting = asyncio.Event()

    async def body() -> None:
        queue = Queue(workers=1, maxsize=0)
        async with queue:
            for coro in coros:
                await queue.put(coro)
            exiting.set()

    task = asyncio.ensure_future(body())
    await exiting.wait()
    await asyncio.sleep(0)  # now inside __aexit__, waiting for the queue
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_workers_cancelled_from_outside_do_not_hang_exit() -> None:
    """If something else cancels the workers (a loop shutting down), exit does not hang."""
    coros, _ = started_and_pending()
    async with Queue(workers=2, maxsize=0) as queue:
        for coro in coros:
            await queue.put(coro)
        await asyncio.sleep(0)
        for worker in queue._worker_tasks:
            worker.cancel()
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    assert other_tasks() == set()


@pytest.mark.asyncio
async def test_join_fails_instead_of_hanging_when_workers_died() -> None:
    """join() raises if every worker was cancelled from outside, rather than waiting forever."""
    gate = asyncio.Event()
    async with Queue(workers=1, maxsize=0) as queue:
        await queue.put(gate.wait())
        await queue.put(value(1))
        await asyncio.sleep(0)
        queue._worker_tasks[0].cancel()
        with pytest.raises(RuntimeError, match="cancelled from outside"):
            await queue.join()
    assert other_tasks() == set()


def test_asyncio_run_with_queue_left_unjoined() -> None:
    """Returning from asyncio.run() inside the block leaves nothing to warn about."""

    async def main() -> int:
        async with Queue(workers=2) as queue:
            for i in range(10):
                await queue.put(value(i, yields=1))
            return len(await queue.join())

    assert asyncio.run(main()) == 10


def test_same_results_as_pyot() -> None:
    """Where Pyot's Queue is defined (values, Nones, raised errors), ours returns the same."""
    pyot_queue = pytest.importorskip("pyot.core.queue", reason="pyot is not installed")
    items: list[tuple[Any, int]] = [(1, 3), (None, 0), ("raise", 1), ("b", 0), (3.5, 2), (0, 1)]

    async def item(result: Any, yields: int) -> Any:
        for _ in range(yields):
            await asyncio.sleep(0)
        if result == "raise":
            raise ValueError("x")
        return result

    async def run(factory: Any) -> tuple[list[Any], int]:
        handled = RecordingHandler()
        async with factory(workers=3, exception_handler=handled) as queue:
            for result, yields in items:
                await queue.put(item(result, yields))
            return await queue.join(), len(handled.calls)

    assert asyncio.run(run(Queue)) == asyncio.run(run(pyot_queue.Queue)) == ([1, "b", 3.5, 0], 1)
