"""resourceloop's locks are never left held by a signal handler that raises (CPython gh-148874)."""

from __future__ import annotations

import ast
import pathlib
import signal
import threading

import pytest

import resourceloop
from resourceloop._compat import WITH_CAN_SKIP_EXIT
from resourceloop._locks import InterruptSafeLock, new_lock, new_rlock
from tests._signals import RandomInterrupts

posix_only = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")


def test_new_lock_is_the_plain_lock_where_with_is_atomic() -> None:
    expected = InterruptSafeLock if WITH_CAN_SKIP_EXIT else type(threading.Lock())
    assert type(new_lock()) is expected


@pytest.mark.parametrize("make", [new_lock, new_rlock])
def test_the_lock_excludes_other_threads(make: object) -> None:
    lock = make()  # type: ignore[operator]
    with lock:
        other = threading.Thread(target=lambda: results.append(lock.acquire(timeout=0.01)))
        results: list[bool] = []
        other.start()
        other.join()
        assert results == [False]
    assert lock.acquire(blocking=False)
    lock.release()


def test_the_reentrant_lock_is_reentrant() -> None:
    lock = new_rlock()
    with lock, lock:
        pass
    assert lock.acquire(blocking=False)
    lock.release()


def _held(lock: object) -> bool:
    """Whether ``lock`` is held: asked from another thread, as a reentrant lock would let us in."""
    free: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)  # type: ignore[attr-defined]
        if got:
            lock.release()  # type: ignore[attr-defined]
        free.append(got)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return free != [True]


@posix_only
@pytest.mark.timeout(120, method="thread")  # SIGALRM is this test's
def test_a_signal_at_any_instant_never_leaves_a_lock_held() -> None:
    """3,000 bursts of ``with`` blocks, each cut short by a real signal at a random instant.

    On CPython 3.14 a plain ``threading.Lock`` leaks in about half of them (the handler runs
    at the end of the ``__enter__`` call, before ``__exit__`` is armed); ours never does.
    """
    lock, rlock = new_lock(), new_rlock()

    def burst() -> None:
        for _ in range(500):
            with lock, rlock, rlock:
                pass

    left_held = 0
    with RandomInterrupts(seed=148874, longest=4e-5) as interrupts:
        for _ in range(3_000):
            interrupts.run(burst)
            if _held(lock) or _held(rlock):
                left_held += 1
                break
    assert left_held == 0
    assert interrupts.interrupted > 0  # the signal did land inside the with blocks


_LOOPS = (
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _holds_a_lock(item: ast.withitem) -> bool:
    return "lock" in ast.unparse(item.context_expr).rpartition(".")[2].lower()


def test_no_loop_runs_under_a_lock() -> None:
    """A ``with <lock>:`` body in the library calls a function to loop, never loops itself.

    CPython leaves some loop jumps out of the ``with``'s exception table (3.14's inlined
    ``all()``, a loop ending in an ``if``), and a jump back runs signal handlers: a Ctrl-C
    there skips ``__exit__`` and leaves the lock held (see ``resourceloop/_registry.py``).
    The demo is left out: it is a program of its own, not the library's guarantee.
    """
    package = pathlib.Path(resourceloop.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if "demo" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.With) and any(_holds_a_lock(i) for i in node.items):
                found += [
                    f"{path.relative_to(package)}:{inner.lineno}"
                    for statement in node.body
                    for inner in ast.walk(statement)
                    if isinstance(inner, _LOOPS)
                ]
    assert found == []
