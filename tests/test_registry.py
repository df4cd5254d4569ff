"""Tests for ``resourceloop._registry``: who holds which resource, and the books.

Most tests drive a private ``Registry`` with real, idle event loops (nothing runs on them),
so each operation's contract is checked on its own: where the store lives, custody moves
(take, settle, claim), the counters, the live listing, the flags, and the fork reset.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from resourceloop import _registry, _state
from resourceloop._registry import Registry
from resourceloop._state import (
    HELD,
    READY_ATTR,
    SETTLED,
    STORE_KEY,
    LoopState,
    Spec,
    Store,
    carried_store,
    wake_reaper,
    wakeup_lock,
)


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def loops() -> Iterator[list[asyncio.AbstractEventLoop]]:
    """Fresh idle loops, closed with the class's own close at the end (no hook involved)."""
    made: list[asyncio.AbstractEventLoop] = []
    yield made
    for loop in made:
        hot = vars(loop).pop(READY_ATTR, None)
        store = hot.pop(STORE_KEY, None) if hot is not None else None
        if store is not None:
            store.clear()  # a private registry's resources: nothing to rescue later
        type(loop).close(loop)


def _new(loops: list[asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loops.append(loop)
    return loop


class SlotLoop(asyncio.SelectorEventLoop):
    """A loop whose ``vars()`` fails, as for a C loop class without ``__dict__``."""

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        raise AttributeError("__dict__")


A = Spec("a", None, None)
B = Spec("b", None, None)


def _multithreaded(reg: Registry) -> bool:
    return reg.multithreaded  # read through a call: each read is a new observation


def _strong(state: LoopState) -> Store | None:
    return state.strong_store


def _on_thread(target: Any) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


# -- loops -------------------------------------------------------------------------------------


def test_add_creates_once_and_puts_the_store_on_the_loop(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """The first add creates state and store (on the loop); later adds return the same state."""
    loop = _new(loops)
    assert reg.get(loop) is None
    state, created = reg.add(loop, "origin")
    assert created
    hot = vars(loop)[READY_ATTR]
    assert type(hot) is dict  # exact: the hot path's subscript is specialized
    store = hot[STORE_KEY]  # the loop refers to its store through it
    assert isinstance(store, Store)
    assert store.hot is hot
    assert carried_store(loop) is store
    assert store.loop is None  # pinned: the state holds the store, the store not the loop
    assert store.state is state
    assert state.store() is store
    assert state.strong_store is store
    assert state.pinned
    assert state.loop() is loop
    assert state.thread is threading.current_thread()
    assert (state.origin, state.closing, state.discarded) == ("origin", False, False)
    again, created_again = reg.add(loop, "other")
    assert (again, created_again) == (state, False)
    assert reg.get(loop) is state
    assert len(reg) == 1
    assert list(reg) == [loop]
    assert reg.snapshot() == [(loop, state)]


def test_a_loop_without_dict_holds_its_store_in_its_state(reg: Registry) -> None:
    """No instance ``__dict__``: the state keeps the store strongly, and it has no loop ref."""
    loop = SlotLoop()
    try:
        state, created = reg.add(loop, "slots")
        assert created
        store = state.store()
        assert store is not None
        assert state.strong_store is store
        assert store.loop is None
        reg.store(state, A, "r")
        assert reg.live_entries() == [(A, state)]
        reg.discard(state)
        assert _strong(state) is None
        assert reg.get(loop) is None
    finally:
        loop.close()


def test_serials_and_superseded(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """A loop is superseded once its thread tracks a newer one, never by another thread's."""
    first, _ = reg.add(_new(loops), "first")
    assert not reg.superseded(first)
    others: list[Any] = []
    _on_thread(lambda: others.append(reg.add(_new(loops), "elsewhere")[0]))
    assert not reg.superseded(first)  # another thread's newer loop says nothing about ours
    assert not reg.superseded(others[0])
    second, _ = reg.add(_new(loops), "second")
    assert second.serial > others[0].serial > first.serial
    assert reg.superseded(first)
    assert not reg.superseded(second)


def test_discard_untracks_and_breaks_the_cycle(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Discard removes the state and the store from the loop; a second discard is a no-op."""
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    store = state.store()
    assert store is not None
    reg.discard(state)
    assert state.discarded
    assert reg.get(loop) is None
    assert READY_ATTR not in vars(loop)
    assert store.loop is None
    assert STORE_KEY not in store.hot  # no store <-> hot dict cycle left: refcounting frees it
    reg.discard(state)  # idempotent
    fresh, created = reg.add(loop, "again")  # tracked anew with a new store
    assert created
    assert fresh is not state
    reg.discard(state)  # the old state's discard must not untrack the new one
    assert reg.get(loop) is fresh
    assert carried_store(loop) is fresh.store()


def test_discard_leaves_a_foreign_attribute_alone(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """A store on the loop that is not the state's own (another registry's) stays."""
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    foreign = Store(loop, state).hot
    vars(loop)[READY_ATTR] = foreign
    reg.discard(state)
    assert vars(loop)[READY_ATTR] is foreign


def test_multithreaded_needs_two_threads_holding_loops_at_once(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """One thread's many loops, or threads one after the other: not multithreaded."""
    for _ in range(3):
        reg.add(_new(loops), "main")
    assert not _multithreaded(reg)
    state_of_main = reg.snapshot()
    for _loop, state in state_of_main:
        reg.discard(state)
    _on_thread(lambda: reg.add(_new(loops), "worker"))  # main's loops are gone by now
    assert not _multithreaded(reg)
    reg.add(_new(loops), "main again")  # the worker's loop is still tracked
    assert _multithreaded(reg)
    for _loop, state in reg.snapshot():
        reg.discard(state)
    reg.add(_new(loops), "main")
    assert _multithreaded(reg)  # once seen, it stays: "have held resources at the same time"
    for _loop, state in reg.snapshot():
        reg.discard(state)
    _on_thread(lambda: reg.add(_new(loops), "another worker"))  # alone now, but it stays
    assert _multithreaded(reg)


def test_multithreaded_when_a_second_thread_adds_while_the_first_holds(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """The flag turns on at the first add of a thread while another thread's loop is tracked."""
    reg.add(_new(loops), "main")
    reg.add(_new(loops), "main")
    assert not _multithreaded(reg)
    _on_thread(lambda: reg.add(_new(loops), "worker"))
    assert _multithreaded(reg)


def test_idle_until_something_is_tracked_held_or_rescued(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """idle() is true only with no state, no batch in custody and nothing rescued."""
    assert reg.idle()
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    assert not reg.idle()
    reg.store(state, A, "r")
    batch = reg.take_all(state, closing=True)
    reg.discard(state)
    assert not reg.idle()  # the batch is still in custody
    reg.settle(batch, batch.items[0], "graceful_releases")
    assert reg.idle()
    other, _ = reg.add(_new(loops), "y")
    store = other.store()
    reg.discard(other)
    assert reg.idle()
    _state._rescued.append(Store(None, reg.add(_new(loops), "z")[0]))
    try:
        reg.discard(reg.snapshot()[0][1])
        assert not reg.idle()  # a rescued store waits for the reaper
    finally:
        _state._rescued.clear()
    del store


# -- custody -----------------------------------------------------------------------------------


def test_store_counts_and_refuses_a_closing_loop(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """store() counts an acquisition; once the loop is closing or discarded it refuses."""
    state, _ = reg.add(_new(loops), "x")
    assert reg.store(state, A, "ra")
    assert reg.counters().acquisitions == 1
    assert state.store() == {A: "ra"}
    reg.take_all(state, closing=True)
    assert state.closing
    assert not reg.store(state, B, "rb")
    assert reg.counters().acquisitions == 1
    other, _ = reg.add(_new(loops), "y")
    reg.discard(other)
    assert not reg.store(other, A, "r")
    assert reg.counters().acquisitions == 1


def test_take_all_newest_first_and_closing_only_when_asked(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """take_all empties the store newest first; closing=False keeps the loop acquiring."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.take_all(state, closing=False)
    assert [(i.spec, i.resource, i.status) for i in batch.items] == [
        (B, "rb", HELD),
        (A, "ra", HELD),
    ]
    assert state.store() == {}
    assert not state.closing
    assert reg.batches_of(state) == [batch]
    assert sorted(s.name for s, _ in reg.live_entries()) == ["a", "b"]
    empty = reg.take_all(state, closing=False)
    assert empty.items == []
    assert batch in reg.batches_of(state)
    assert empty not in reg.batches_of(state)  # an empty batch is never in custody


def test_take_one(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """take() moves just that spec's resource; a spec not held gives an empty batch."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.take(state, A)
    assert [(i.spec, i.resource) for i in batch.items] == [(A, "ra")]
    assert state.store() == {B: "rb"}
    assert reg.take(state, A).items == []
    assert not state.closing
    reg.discard(state)
    assert reg.take(state, B).items == []  # the store is gone with the state


def test_settle_counts_once_and_ends_custody(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Each item is counted once, under its outcome; the batch leaves custody when all are."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.take_all(state, closing=True)
    first, second = batch.items
    assert reg.settle(batch, first, "graceful_releases")
    assert first.status == SETTLED
    assert reg.settle(batch, first, "forced_releases") is False
    assert reg.batches_of(state) == [batch]
    assert batch.unsettled() == [second]
    assert [s for s, _ in reg.live_entries()] == [A]
    assert reg.settle(batch, second, "release_failures")
    assert reg.batches_of(state) == []
    assert reg.idle() is False  # the state is still tracked
    counts = reg.counters()
    assert (counts.graceful_releases, counts.forced_releases, counts.release_failures) == (1, 0, 1)
    assert reg.live_entries() == []


def test_claim_settles_without_counting(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """claim() makes one owner the only one; it ends custody but counts nothing."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    batch = reg.take_all(state, closing=True)
    [item] = batch.items
    assert reg.claim(batch, item)
    assert reg.claim(batch, item) is False
    assert reg.settle(batch, item, "graceful_releases") is False
    assert reg.batches_of(state) == []
    counts = reg.counters()
    assert counts.graceful_releases + counts.forced_releases + counts.release_failures == 0


def test_claim_keeps_a_partly_settled_batch_in_custody(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """A batch with an unsettled item stays in custody after another item is claimed."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.take_all(state, closing=True)
    assert reg.claim(batch, batch.items[0])
    assert reg.batches_of(state) == [batch]
    assert not reg.idle()


def test_adopt_counts_and_holds(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """A resource created too late to store is counted and in custody at once."""
    state, _ = reg.add(_new(loops), "x")
    batch = reg.adopt(state, A, "late")
    assert reg.counters().acquisitions == 1
    assert [(i.spec, i.resource, i.status) for i in batch.items] == [(A, "late", HELD)]
    assert reg.batches_of(state) == [batch]
    assert reg.live_entries() == [(A, state)]
    assert reg.live_by_template() == {"a": 1}


def test_managed_flag(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """set_managed reports whether it changed anything; managed_loops lists the managed ones."""
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    reg.add(_new(loops), "y")
    assert not reg.set_managed(state, False)
    assert reg.set_managed(state, True)
    assert state.managed
    assert not reg.set_managed(state, True)
    assert reg.managed_loops() == [loop]
    assert reg.set_managed(state, False)
    assert reg.managed_loops() == []


def test_counters_and_count(reg: Registry) -> None:
    """count() adds to one counter; counters() is a snapshot of all."""
    reg.count("reaper_passes")
    reg.count("reaper_passes", 2)
    reg.count("release_timeouts")
    counts = reg.counters()
    assert (counts.reaper_passes, counts.release_timeouts, counts.acquisitions) == (3, 1, 0)


def test_live_entries_cover_stores_custody_and_rescued(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Live means in a store, unsettled in a batch, or rescued; repr shows each count."""
    one, _ = reg.add(_new(loops), "one")
    two, _ = reg.add(_new(loops), "two")
    reg.store(one, A, "a1")
    reg.store(two, A, "a2")
    reg.store(two, B, "b2")
    batch = reg.take(two, B)
    rescued = Store(None, reg.add(_new(loops), "three")[0])
    rescued[A] = "a3"
    _state._rescued.append(rescued)
    try:
        assert reg.live_by_template() == {"a": 3, "b": 1}
        assert repr(reg) == "<Registry loops=3 live=4 in_custody=1 rescued=1>"
        reg.settle(batch, batch.items[0], "graceful_releases")
        assert reg.live_by_template() == {"a": 3}
        assert repr(reg) == "<Registry loops=3 live=3 in_custody=0 rescued=1>"
    finally:
        _state._rescued.clear()


# -- collected loops ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's, about the dropped loop
def test_a_dropped_loop_with_resources_is_rescued_then_drained(reg: Registry) -> None:
    """An unpinned loop nobody refers to is collected into ``_rescued``; draining takes it."""
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "dropped")
    reg.store(state, A, ["holds the loop", loop])
    assert reg.unpin(state, loop)  # as the reaper does once its thread moved on
    assert not state.pinned
    loop_id = id(loop)
    wakeup_lock().acquire(blocking=False)  # as if the reaper thread were asleep on it
    del loop
    gc.collect()
    try:
        assert not wakeup_lock().locked()  # the rescue woke the reaper
        assert len(_state._rescued) == 1
        assert not reg.idle()
        [(drained_state, drained_loop, batch)] = reg.drain_rescued()
        assert drained_state is state
        assert id(drained_loop) == loop_id
        assert state.discarded
        assert state.closing
        assert [(i.spec, i.status) for i in batch.items] == [(A, HELD)]
        assert reg.batches_of(state) == [batch]
        assert reg.drain_rescued() == []
        reg.settle(batch, batch.items[0], "forced_releases")
        assert drained_loop is not None
        type(drained_loop).close(drained_loop)
    finally:
        _state._rescued.clear()


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # asyncio's, about the dropped loop
def test_an_empty_or_discarded_store_is_not_rescued(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Only a store that still holds resources of a tracked loop resurrects it."""
    loop = asyncio.new_event_loop()
    reg.add(loop, "empty")
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    assert len(_state._rescued) == 0
    state, _ = reg.add(_new(loops), "discarded")
    store = state.store()
    assert store is not None
    store[A] = "r"
    state.discarded = True
    del store
    vars(loops[-1]).pop(READY_ATTR)
    gc.collect()
    assert len(_state._rescued) == 0


def test_drain_skips_stores_of_discarded_states_and_other_processes(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """A rescued store whose state was discarded, or of a forgotten registry, is dropped."""
    gone, _ = reg.add(_new(loops), "gone")
    gone_store = Store(None, gone)
    gone_store[A] = "r"
    gone.discarded = True
    foreign, _ = reg.add(_new(loops), "foreign")
    foreign_store = Store(None, foreign)
    foreign_store[A] = "r"
    foreign_store.generation = -1  # a registry a fork (or a reset) forgot
    kept, _ = reg.add(_new(loops), "kept")
    kept_store = Store(None, kept)
    kept_store[A] = "r"
    _state._rescued.extend([gone_store, foreign_store, kept_store])
    try:
        drained = reg.drain_rescued()
        assert [d[0] for d in drained] == [kept]
        assert not foreign.discarded
        assert len(_state._rescued) == 0
    finally:
        _state._rescued.clear()


# -- templates and fork ------------------------------------------------------------------------


class Template:
    """Anything weak-referenceable stands in for a template here."""


def test_templates_in_creation_order_and_weakly(reg: Registry) -> None:
    """templates() lists live templates in the order they were added; dropped ones vanish."""
    first, second, third = Template(), Template(), Template()
    for template in (first, second, third):
        reg.add_template(template)
    assert reg.templates() == [first, second, third]
    del second
    gc.collect()
    assert reg.templates() == [first, third]


def test_forget_after_fork_keeps_templates_and_forgets_the_rest(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """After fork: no loop, no custody, no counts, no cache on inherited loops; same templates."""
    first, second = Template(), Template()
    reg.add_template(first)
    reg.add_template(second)
    loop = _new(loops)
    state, _ = reg.add(loop, "inherited")
    reg.store(state, A, "parent's")
    other, _ = reg.add(_new(loops), "other")
    reg.store(other, A, "in custody")
    reg.take_all(other, closing=True)
    _on_thread(lambda: reg.add(_new(loops), "worker"))
    assert _multithreaded(reg)
    slot_loop = SlotLoop()
    reg.add(slot_loop, "slots")
    forgotten = len(_registry._forgotten)
    try:
        reg.forget_after_fork()
        assert reg.templates() == [first, second]
        assert len(reg) == 0
        assert reg.idle()
        assert reg.live_entries() == []
        assert reg.counters().acquisitions == 0
        assert not _multithreaded(reg)
        assert READY_ATTR not in vars(loop)
        assert len(_registry._forgotten) > forgotten  # parked, never released
        fresh, created = reg.add(loop, "child")
        assert created
        assert fresh.store() == {}
        third = Template()
        reg.add_template(third)
        assert reg.templates() == [first, second, third]
    finally:
        del _registry._forgotten[forgotten:]
        slot_loop.close()


def test_clear_for_tests_keeps_templates(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """The test reset forgets loops, counts and rescued stores, but not the templates."""
    template = Template()
    reg.add_template(template)
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "r")
    _state._rescued.append(Store(None, state))
    reg.clear_for_tests()
    assert reg.templates() == [template]
    assert len(reg) == 0
    assert len(_state._rescued) == 0
    assert reg.counters().acquisitions == 0


# -- the reaper's wake-up ----------------------------------------------------------------------


def test_wake_reaper_unlocks_once_and_tolerates_repeats() -> None:
    """wake_reaper() leaves the wake-up lock released, however often it is called."""
    lock = wakeup_lock()
    wake_reaper()
    wake_reaper()
    assert not lock.locked()
    assert lock.acquire(blocking=False)
    assert not lock.acquire(blocking=False)
    wake_reaper()
    assert not lock.locked()


def test_add_wakes_the_reaper(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """Tracking a new loop releases the wake-up lock, so an idle reaper thread starts passes."""
    lock = wakeup_lock()
    lock.acquire(blocking=False)
    loop = _new(loops)
    reg.add(loop, "x")
    assert not lock.locked()
    lock.acquire(blocking=False)
    reg.add(loop, "x")  # already tracked: nothing new to do
    assert lock.locked()
    wake_reaper()


def test_every_way_of_changing_a_store_changes_its_hot_copy(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """``Store.hot`` (what the hot path reads) has the store's items after every change."""
    c, d = Spec("c", None, None), Spec("d", None, None)
    store = Store(None, reg.add(_new(loops), "s")[0])
    store[A] = "a"
    assert store.hot == {A: "a"}
    assert store.setdefault(B, "b") == "b"
    assert store.hot == {A: "a", B: "b"}
    store.update({c: "c"})
    assert store.hot == {A: "a", B: "b", c: "c"}
    store |= {d: "d"}
    assert store.hot == {A: "a", B: "b", c: "c", d: "d"}
    assert store.pop(A) == "a"
    del store[B]
    assert store.hot == {c: "c", d: "d"}
    assert store.popitem() == (d, "d")
    assert store.hot == {c: "c"}
    store.clear()
    assert store.hot == {}
    assert dict(store) == {}


def test_emptying_a_carried_store_keeps_the_loop_s_reference_to_it(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Taking every resource (or ``clear``) empties the hot dict but for the store itself."""
    loop = _new(loops)
    state, _ = reg.add(loop, "kept")
    store = state.store()
    assert store is not None
    assert reg.store(state, A, "a")
    assert vars(loop)[READY_ATTR] == {A: "a", STORE_KEY: store}
    batch = reg.take_all(state, closing=False)
    assert [item.resource for item in batch.items] == ["a"]
    assert vars(loop)[READY_ATTR] == {STORE_KEY: store}
    store[B] = "b"
    store.clear()
    assert vars(loop)[READY_ATTR] == {STORE_KEY: store}
    assert carried_store(loop) is store
    for item in batch.items:
        reg.settle(batch, item, "graceful_releases")


def test_a_loop_a_reset_forgot_is_not_forced_when_collected(reg: Registry) -> None:
    """A pinned loop tracked before ``clear_for_tests()`` and collected after it: its state
    belongs to the forgotten generation, so no drain hands its resources over."""
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "forgotten")
    assert reg.store(state, A, "r")  # pinned; the resource does not refer to the loop
    reg.clear_for_tests()
    type(loop).close(loop)
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    try:
        assert list(_state._collected) == [state]  # the weak reference's callback ran
        assert reg.drain_collected() == []
        assert reg.live_entries() == []
    finally:
        _state._collected.clear()
