"""A Hypothesis state machine over the registry's lifecycle.

Loops are owned by worker threads (one each), so "abandoned" is real: the worker ends and
leaves its loop unclosed. Rules acquire and release templates on a loop, run a
``resource_manager`` on it, close it (through the close hook, or behind its back), abandon it,
drop the last reference to it and collect, and run a reaper pass. A model predicts, after every
step, exactly which resources have been released and how (gracefully on their own loop, or
forcefully); the invariants compare it with what the release functions recorded and with
``stats()``. Workers are idle between steps, so "released while its loop still uses it" shows
up as a release the model did not predict.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import queue
import signal
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from resourceloop import ResourceTemplate, _runtime, reap, resource_manager, stats
from tests._fakes import Res

N_TEMPLATES = 3
MAX_LOOPS = 4
NAMES = [f"stateful-{i}" for i in range(N_TEMPLATES)]


class MachineLoop(asyncio.SelectorEventLoop):
    """asyncio's default loop without its ``__del__``.

    The machine drops unclosed loops on purpose. When the cyclic collector happens to finalize
    such a loop's self-pipe socket before the loop, asyncio's ``__del__`` (which closes the
    loop) fails with "Invalid file descriptor: -1", with or without resourceloop: noise that
    is not under test here.
    """

    def __del__(self) -> None:
        pass


class Owner:
    """A worker thread that owns one loop and runs what it is given on it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[
            tuple[Callable[[asyncio.AbstractEventLoop], Any], concurrent.futures.Future[Any]] | None
        ] = queue.Queue()
        self._made: concurrent.futures.Future[asyncio.AbstractEventLoop] = (
            concurrent.futures.Future()
        )
        self.thread = threading.Thread(target=self._run, name="stateful-owner", daemon=True)
        self.thread.start()
        self.loop: asyncio.AbstractEventLoop | None = self._made.result(10)

    def _run(self) -> None:
        loop = MachineLoop()
        self._made.set_result(loop)
        del loop
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            try:
                done.set_result(work(self._made.result()))
            except BaseException as exc:
                done.set_exception(exc)
            del job, work, done

    def call(self, work: Callable[[asyncio.AbstractEventLoop], Any]) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((work, done))
        return done.result(30)

    def stop(self) -> None:
        self._jobs.put(None)
        self.thread.join(30)
        self._made = concurrent.futures.Future()  # forget the loop: the thread is gone


class LoopModel:
    """What the model knows about one loop."""

    def __init__(self, owner: Owner) -> None:
        self.owner: Owner | None = owner
        loop = owner.loop
        assert loop is not None
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.probe = weakref.ref(loop)
        self.status = "open"  # open | hooked-closed | bypass-closed | abandoned
        self.tracked = False  # has a (non-discarded) state in the registry
        # template -> id of its live resource in the registry. Ids, not the resources: a
        # template 0 resource holds its loop, and the model must not keep a dropped loop alive.
        self.held: dict[int, int] = {}
        self.collected = False

    @property
    def usable(self) -> bool:
        return self.status == "open" and self.owner is not None


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        _runtime._reset_for_tests()
        self.loops: list[LoopModel] = []
        self.releases: dict[int, list[tuple[str, bool]]] = {}  # id -> [(kind, own loop)]
        self.expected: dict[int, str] = {}  # id -> expected kind of its one release
        self.created: dict[int, int] = {}  # id -> template (no strong reference: see drop)
        self.templates = [self._template(i) for i in range(N_TEMPLATES)]

    def _template(self, i: int) -> ResourceTemplate[Res]:
        def record(r: Res, kind: str) -> None:
            running = asyncio._get_running_loop()
            own = running is not None and id(running) == r.loop_id
            self.releases.setdefault(r.serial, []).append((kind, own))

        async def acquire_async() -> Res:
            return Res(asyncio.get_running_loop(), hold_loop=i == 0, name=NAMES[i])

        def acquire_sync() -> Res:
            return Res(asyncio.get_running_loop(), hold_loop=i == 0, name=NAMES[i])

        async def release_async(r: Res) -> None:
            record(r, "graceful")

        def release_sync(r: Res) -> None:
            record(r, "graceful")

        sync = i == 1
        return ResourceTemplate(
            acquire_sync if sync else acquire_async,
            release_sync if sync else release_async,
            name=NAMES[i],
            lazy=True,  # a manager only holds what the rule acquires
            force_release_func=lambda r: record(r, "forced"),
        )

    # -- helpers ---------------------------------------------------------------------------

    def _pick(self, index: int, ok: Callable[[LoopModel], bool]) -> LoopModel:
        candidates = [m for m in self.loops if ok(m)]
        return candidates[index % len(candidates)]

    def _has(self, ok: Callable[[LoopModel], bool]) -> bool:
        return any(ok(m) for m in self.loops)

    def _released(self, model: LoopModel, kind: str) -> None:
        for rid in model.held.values():
            self.expected[rid] = kind
        model.held.clear()

    # -- rules -----------------------------------------------------------------------------

    @precondition(lambda self: sum(m.loop is not None for m in self.loops) < MAX_LOOPS)
    @rule()
    def new_loop(self) -> None:
        self.loops.append(LoopModel(Owner()))

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS), template=st.integers(0, N_TEMPLATES - 1))
    def acquire(self, index: int, template: int) -> None:
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None
        t = self.templates[template]

        async def work() -> Res:
            r = await t.acquire()
            assert await t.acquire() is r  # the hot path gives the same object
            return r

        r = model.owner.call(lambda loop: loop.run_until_complete(work()))
        model.tracked = True
        if template in model.held:
            assert r.serial == model.held[template]
        else:
            assert r.serial not in self.created
            self.created[r.serial] = template
            model.held[template] = r.serial
        del r

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS), template=st.integers(0, N_TEMPLATES - 1))
    def release(self, index: int, template: int) -> None:
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None
        t = self.templates[template]
        model.owner.call(lambda loop: loop.run_until_complete(t.release()))
        rid = model.held.pop(template, None)
        if rid is not None:
            self.expected[rid] = "graceful"

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS), inside=st.sets(st.integers(0, N_TEMPLATES - 1)))
    def manager(self, index: int, inside: set[int]) -> None:
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None
        templates = [self.templates[i] for i in sorted(inside)]

        async def work() -> list[Res]:
            async with resource_manager():
                return [await t.acquire() for t in templates]

        got = model.owner.call(lambda loop: loop.run_until_complete(work()))
        model.tracked = True
        for i, r in zip(sorted(inside), got, strict=True):
            if i in model.held:
                assert r.serial == model.held[i]
            else:
                self.created[r.serial] = i
                model.held[i] = r.serial
        self._released(model, "graceful")

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS), hooked=st.booleans())
    def close(self, index: int, hooked: bool) -> None:
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None
        if hooked:
            model.owner.call(lambda loop: loop.close())
            model.status = "hooked-closed"
            self._released(model, "graceful")
            model.tracked = False
        else:
            model.owner.call(lambda loop: type(loop).close(loop))  # behind the hook's back
            model.status = "bypass-closed"
        model.owner.stop()  # a closed loop's thread has nothing left to do
        model.owner = None

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS))
    def stop_then_close(self, index: int) -> None:
        """The ``finally: loop.stop(); loop.close()`` idiom: still graceful, on the loop."""
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None

        def stop_close(loop: asyncio.AbstractEventLoop) -> None:
            loop.stop()
            loop.close()

        model.owner.call(stop_close)
        model.status = "hooked-closed"
        self._released(model, "graceful")
        model.tracked = False
        model.owner.stop()
        model.owner = None

    @rule(templates=st.sets(st.integers(0, N_TEMPLATES - 1)), interrupted_first=st.booleans())
    def sigint_during_close(self, templates: set[int], interrupted_first: bool) -> None:
        """A real SIGINT while the close hook releases, on the main thread.

        KeyboardInterrupt reaches the caller of ``close()``; the loop is really closed; what
        was released before it stays graceful and the rest is forced.
        """
        loop = MachineLoop()
        order = sorted(templates)
        with _sigint_release() as interrupting:
            chosen = [self.templates[i] for i in order]
            # Released newest first: last acquired, first interrupted.
            sequence = [*chosen, interrupting] if interrupted_first else [interrupting, *chosen]

            async def work() -> list[Res]:
                return [await t.acquire() for t in sequence]

            got = loop.run_until_complete(work())
            with pytest.raises(KeyboardInterrupt):
                loop.close()
        assert loop.is_closed()
        mine = got[:-1] if interrupted_first else got[1:]
        for i, r in zip(order, mine, strict=True):
            self.created[r.serial] = i
            self.expected[r.serial] = "forced" if interrupted_first else "graceful"

    @precondition(lambda self: self._has(lambda m: m.usable))
    @rule(index=st.integers(0, MAX_LOOPS))
    def abandon(self, index: int) -> None:
        model = self._pick(index, lambda m: m.usable)
        assert model.owner is not None
        model.owner.stop()
        model.owner = None
        model.status = "abandoned"

    @precondition(lambda self: self._has(lambda m: m.loop is not None and m.owner is None))
    @rule(index=st.integers(0, MAX_LOOPS))
    def drop_and_collect(self, index: int) -> None:
        """Drop our last reference to a loop nobody runs any more, and collect."""
        model = self._pick(index, lambda m: m.loop is not None and m.owner is None)
        model.loop = None
        gc.collect()
        alive = model.probe() is not None
        # resourceloop keeps a dropped loop alive exactly while it is tracked (not yet ended)
        # and one of its resources refers to it (template 0's): its store is held until the
        # loop's end, which a pass decides while the loop is reachable, never the collector.
        assert alive == (model.tracked and 0 in model.held)
        if not alive and not model.collected:
            model.collected = True
            event(f"collected {model.status} loop")
            if model.tracked:
                if model.held:
                    event("collected a loop that holds resources")
                # At the next pass (see `reap`): a loop collected (its resources do not refer
                # to it) is gone, so what it held is forced.
                self._released(model, "forced")
                model.tracked = False
                self.pending_collected = True

    @rule()
    def reap(self) -> None:
        reap()
        for model in self.loops:
            if model.collected or not model.tracked:
                continue
            if model.held and model.status != "open":
                event(f"reaped a {model.status} loop that holds resources")
            if model.status == "bypass-closed":
                self._released(model, "forced")
                model.tracked = False
            elif model.status == "abandoned":
                self._released(model, "graceful")
                model.tracked = False
        self.pending_collected = False

    pending_collected = False

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def releases_match_the_model(self) -> None:
        if self.pending_collected:
            # Collected loops are released by the next pass: not yet.
            done = {rid for rid in self.expected if self.releases.get(rid)}
            expected = {rid: self.expected[rid] for rid in done}
        else:
            expected = dict(self.expected)
        actual = {}
        for rid, calls in self.releases.items():
            assert len(calls) == 1, f"resource {rid} released {len(calls)} times: {calls}"
            kind, own_loop = calls[0]
            if kind == "graceful":
                assert own_loop, f"resource {rid} was released on a foreign loop"
            actual[rid] = kind
        assert actual == expected

    @invariant()
    def stats_match_the_model(self) -> None:
        live = {name: n for name, n in stats().resources_live.items() if name in NAMES}
        want: dict[str, int] = {}
        for model in self.loops:
            for i in model.held:
                want[NAMES[i]] = want.get(NAMES[i], 0) + 1
        if self.pending_collected:
            for rid in self.expected:
                if not self.releases.get(rid):
                    name = NAMES[self.created[rid]]
                    want[name] = want.get(name, 0) + 1
        assert live == want

    # -- teardown --------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            for model in self.loops:
                if model.owner is not None:
                    if model.status == "open":
                        model.owner.call(lambda loop: loop.close())
                        self._released(model, "graceful")
                        model.tracked = False
                    model.owner.stop()
                    model.owner = None
            reap()
            for model in self.loops:
                if model.tracked and not model.collected:
                    kind = "forced" if model.status == "bypass-closed" else "graceful"
                    self._released(model, kind)
                    model.tracked = False
            self.pending_collected = False
            self.releases_match_the_model()
            assert set(self.releases) == set(self.created)  # every resource released once
            for model in self.loops:
                if model.loop is not None and not model.loop.is_closed():
                    model.loop.close()  # ours; nothing of resourceloop's is left on it
            assert stats().loops_tracked == 0
            assert {n for n in stats().resources_live if n in NAMES} == set()
        finally:
            for model in self.loops:
                if model.owner is not None:
                    model.owner.stop()
            self.loops.clear()
            self.created.clear()
            _runtime._reset_for_tests()


@contextlib.contextmanager
def _sigint_release() -> Iterator[ResourceTemplate[Any]]:
    """A template whose release sends this process a real SIGINT (the default handler)."""

    async def release(r: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt at the next bytecode
        await asyncio.sleep(0)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # lazy: no manager of another rule acquires it (its SIGINT would hit the main thread).
        yield ResourceTemplate(
            object, release, name="sigint", lazy=True, force_release_func=lambda r: None
        )
    finally:
        signal.signal(signal.SIGINT, previous)


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The machine checks releases through its model, not through warnings. asyncio's own
# "unclosed event loop"/"unclosed <socket ...>" warnings, from the loops it abandons and drops
# on purpose, are expected.
TestRegistryMachine = pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")(
    pytest.mark.usefixtures("slow_reaper")(TestRegistryMachine)  # the machine runs every pass
)
