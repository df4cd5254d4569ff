"""Tests for ``resourceloop._registry``: who holds which resource, and the books.

Most tests drive a private ``Registry`` with real, idle event loops (nothing runs on them),
so each operation's contract is checked on its own: where the store lives, custody moves
(take, settle, claim), the counters, the live listing, the flags, and the fork reset.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from resourceloop import _state
from resourceloop._registry import Registry
from resourceloop._state import (
    ENDING,
    GONE,
    HELD,
    OPEN,
    READY_ATTR,
    SETTLED,
    STORE_KEY,
    LoopState,
    Spec,
    Store,
    Wakeup,
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
            store.clear()  # a private registry's resources: nothing to release later
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


def _carried(loop: asyncio.AbstractEventLoop) -> Any:
    """The store the loop carries (in its hot dict), or ``None``."""
    hot = vars(loop).get(READY_ATTR)
    return None if hot is None else hot.get(STORE_KEY)


def _phase(state: LoopState) -> _state.Phase:
    return state.phase  # read through a call: each read is a new observation


def _ender(state: LoopState) -> object:
    return state.ender  # read through a call: each read is a new observation


def _orphan(reg: Registry, loop: asyncio.AbstractEventLoop, resource: Any) -> LoopState:
    """A state of ``reg``'s generation that no map holds, as a collected loop's would be."""
    state = LoopState(
        loop_ref=weakref.ref(loop),
        origin="orphan",
        thread=threading.current_thread(),
        generation=reg.generation,
        store=Store(),
    )
    assert state.store is not None
    state.store[A] = resource
    return state


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
    assert _carried(loop) is store
    assert state.store is store  # held strongly by the state until the loop is GONE
    assert state.loop() is loop
    assert state.thread is threading.current_thread()
    assert (state.origin, state.phase) == ("origin", OPEN)
    again, created_again = reg.add(loop, "other")
    assert (again, created_again) == (state, False)
    assert reg.get(loop) is state
    assert len(reg) == 1
    assert list(reg) == [loop]
    assert reg.snapshot() == [(loop, state)]


def test_a_loop_without_dict_holds_its_store_in_its_state(reg: Registry) -> None:
    """No ``vars()``: the state still holds the store strongly; discarding lets it go."""
    loop = SlotLoop()
    try:
        state, created = reg.add(loop, "slots")
        assert created
        store = state.store
        assert store is not None
        reg.store(state, A, "r")
        assert reg.live_entries() == [(A, state)]
        batch = reg.begin_end(state)
        assert batch is not None
        reg.settle(batch, batch.items[0], "forced_releases")
        reg.discard(state)
        assert state.store is None
        assert _phase(state) is GONE
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


def test_what_changed_since_the_reaper_last_looked(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """The reaper's events: states tracked since a serial (oldest first, those discarded
    meanwhile left out), threads that moved on to a newer loop, and threads that ended."""
    first, _ = reg.add(_new(loops), "first")
    others: list[Any] = []
    ended: list[threading.Thread] = []

    def elsewhere() -> None:
        others.append(reg.add(_new(loops), "elsewhere")[0])
        ended.append(threading.current_thread())

    _on_thread(elsewhere)
    assert reg.thread_events() == (ended, [])  # its end came as the thread's state was cleared
    second, _ = reg.add(_new(loops), "second")
    third, _ = reg.add(_new(loops), "third")
    reg.discard(second)
    assert reg.tracked_since(0) == [first, others[0], third]
    assert reg.tracked_since(others[0].serial) == [third]
    assert reg.tracked_since(third.serial) == []
    assert reg.thread_events() == ([], [threading.current_thread()])
    assert reg.thread_events() == ([], [])


def test_discard_untracks_and_breaks_the_cycle(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Discard removes the state and the store from the loop; a second discard is a no-op."""
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    store = state.store
    assert store is not None
    reg.discard(state)
    assert state.phase is GONE
    assert state.store is None
    assert reg.get(loop) is None
    assert READY_ATTR not in vars(loop)
    assert STORE_KEY not in store.hot  # no store <-> hot dict cycle left: refcounting frees it
    reg.discard(state)  # idempotent
    fresh, created = reg.add(loop, "again")  # tracked anew with a new store
    assert created
    assert fresh is not state
    reg.discard(state)  # the old state's discard must not untrack the new one
    assert reg.get(loop) is fresh
    assert _carried(loop) is fresh.store


def test_discard_leaves_a_foreign_attribute_alone(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """A store on the loop that is not the state's own (another registry's) stays."""
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    foreign = Store().hot
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


def test_idle_until_something_is_tracked_held_or_collected(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """idle() is true only with no state, no batch in custody and no collected state."""
    assert reg.idle()
    loop = _new(loops)
    state, _ = reg.add(loop, "x")
    assert not reg.idle()
    reg.store(state, A, "r")
    batch = reg.begin_end(state)
    assert batch is not None
    reg.discard(state)
    assert not reg.idle()  # the batch is still in custody
    reg.settle(batch, batch.items[0], "graceful_releases")
    assert reg.idle()
    other, _ = reg.add(_new(loops), "y")
    reg.discard(other)
    assert reg.idle()
    reg.collected.append(_orphan(reg, _new(loops), "r"))
    assert not reg.idle()  # a collected loop's state waits for the reaper
    reg.collected.clear()
    assert reg.idle()


# -- custody -----------------------------------------------------------------------------------


def test_store_counts_and_refuses_a_closing_loop(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """store() counts an acquisition; once the loop is ENDING or GONE it refuses."""
    state, _ = reg.add(_new(loops), "x")
    assert reg.store(state, A, "ra")
    assert reg.counters().acquisitions == 1
    assert state.store == {A: "ra"}
    reg.begin_end(state)
    assert state.phase is ENDING
    assert not reg.store(state, B, "rb")
    assert reg.counters().acquisitions == 1
    other, _ = reg.add(_new(loops), "y")
    reg.discard(other)
    assert not reg.store(other, A, "r")
    assert reg.counters().acquisitions == 1


def test_take_all_newest_first_and_keeps_the_loop_open(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """take_all empties the store newest first and leaves the loop OPEN, acquiring."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.take_all(state)
    assert [(i.spec, i.resource, i.status) for i in batch.items] == [
        (B, "rb", HELD),
        (A, "ra", HELD),
    ]
    assert state.store == {}
    assert state.phase is OPEN
    assert reg.batches_of(state) == [batch]
    assert sorted(s.name for s, _ in reg.live_entries()) == ["a", "b"]
    assert reg.store(state, A, "ra again")  # still acquiring
    reg.take(state, A)  # (a second batch, left in custody)
    empty = reg.take_all(state)
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
    assert state.store == {B: "rb"}
    assert reg.take(state, A).items == []
    assert state.phase is OPEN
    reg.discard(state)
    assert reg.take(state, B).items == []  # the store is gone with the state


def test_settle_counts_once_and_ends_custody(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Each item is counted once, under its outcome; the batch leaves custody when all are."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.begin_end(state)
    assert batch is not None
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
    batch = reg.begin_end(state)
    assert batch is not None
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
    batch = reg.begin_end(state)
    assert batch is not None
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


def test_live_entries_cover_stores_custody_and_collected(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Live means in a store, unsettled in a batch, or a collected OPEN state's; repr counts."""
    one, _ = reg.add(_new(loops), "one")
    two, _ = reg.add(_new(loops), "two")
    reg.store(one, A, "a1")
    reg.store(two, A, "a2")
    reg.store(two, B, "b2")
    batch = reg.take(two, B)
    reg.collected.append(_orphan(reg, _new(loops), "a3"))
    assert reg.live_by_template() == {"a": 3, "b": 1}
    assert repr(reg) == "<Registry loops=2 live=4 in_custody=1 collected=1>"
    reg.settle(batch, batch.items[0], "graceful_releases")
    assert reg.live_by_template() == {"a": 3}
    assert repr(reg) == "<Registry loops=2 live=3 in_custody=0 collected=1>"
    reg.collected.clear()


# -- loop ends ---------------------------------------------------------------------------------


def test_begin_end_hands_the_loop_to_one_owner(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """Only the first begin_end takes the resources; an ENDING or GONE loop yields None."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    reg.store(state, B, "rb")
    batch = reg.begin_end(state)
    assert batch is not None
    assert [i.resource for i in batch.items] == ["rb", "ra"]
    assert state.phase is ENDING
    assert state.store == {}
    assert reg.begin_end(state) is None
    assert reg.states() == [state]  # ENDING is still tracked
    for item in batch.items:
        reg.settle(batch, item, "graceful_releases")
    reg.discard(state)
    assert reg.begin_end(state) is None
    assert reg.states() == []


def test_take_over_hands_an_ending_loop_to_a_new_owner(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """take_over takes what an ENDING loop still holds and drops its ender; not OPEN or GONE."""
    state, _ = reg.add(_new(loops), "x")
    assert reg.take_over(state) is None  # OPEN: begin_end is the only way in
    first = reg.begin_end(state)
    assert first is not None
    assert first.items == []
    state.ender = asyncio.Future(loop=loops[0])
    assert state.store is not None
    state.store[A] = "stored meanwhile"  # as a creation in flight would, raw
    taken = reg.take_over(state)
    assert taken is not None
    assert [(i.spec, i.resource) for i in taken.items] == [(A, "stored meanwhile")]
    assert _ender(state) is None
    assert state.phase is ENDING
    reg.settle(taken, taken.items[0], "forced_releases")
    reg.discard(state)
    assert reg.take_over(state) is None


def test_discard_if_idle_only_an_open_empty_loop(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """discard_if_idle untracks an OPEN loop holding nothing; anything held or ENDING: no."""
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "ra")
    assert not reg.discard_if_idle(state)  # holds a resource
    batch = reg.take_all(state)
    assert not reg.discard_if_idle(state)  # one in custody
    reg.settle(batch, batch.items[0], "graceful_releases")
    assert reg.discard_if_idle(state)
    assert state.phase is GONE
    assert reg.get(loops[0]) is None
    other, _ = reg.add(_new(loops), "y")
    reg.begin_end(other)
    assert not reg.discard_if_idle(other)  # ENDING: its owner discards it
    assert other.phase is ENDING


def test_discard_if_idle_owns_the_end_before_it_discards(
    reg: Registry, loops: list[asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between deciding that a loop is idle and untracking it, the end is already owned
    (ENDING): a second trigger arriving then (another thread's close, the reaper) is refused,
    rather than taking the loop's end too."""
    state, _ = reg.add(_new(loops), "x")
    second_trigger: list[object] = []
    discard = reg.discard

    def trigger_then_discard(state: LoopState) -> Any:
        second_trigger.append(reg.begin_end(state, ender="another trigger"))
        return discard(state)

    monkeypatch.setattr(reg, "discard", trigger_then_discard)
    assert reg.discard_if_idle(state)
    assert second_trigger == [None]
    assert state.phase is GONE


def test_recover_creation_books_once(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """An interrupted creation is stored (OPEN) or taken (ENDING), counted once either way."""
    state, _ = reg.add(_new(loops), "x")
    assert reg.store(state, A, "ra")
    assert reg.recover_creation(state, A, "ra") is None  # recorded after all: nothing new
    assert reg.recover_creation(state, B, "rb") is None  # stored now
    assert state.store == {A: "ra", B: "rb"}
    assert reg.counters().acquisitions == 2
    batch = reg.begin_end(state)
    assert batch is not None
    late = reg.recover_creation(state, A, "late")
    assert late is not None
    assert [(i.spec, i.resource, i.status) for i in late.items] == [(A, "late", HELD)]
    assert reg.recover_creation(state, A, "late") is None  # in custody already
    assert reg.counters().acquisitions == 3
    assert set(reg.batches_of(state)) == {batch, late}


# -- collected loops ---------------------------------------------------------------------------


def test_a_loop_whose_resources_refer_to_it_stays_alive_while_tracked(reg: Registry) -> None:
    """The state holds the store strongly, so a loop its resources refer to is never collected
    while OPEN (its end is decided while it is reachable); discarding lets refcounting free it."""
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "kept")
    reg.store(state, A, ["holds the loop", loop])
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    kept = probe()
    assert kept is not None
    assert reg.collected == collections.deque()
    type(kept).close(kept)
    del kept
    batch = reg.begin_end(state)
    assert batch is not None
    reg.settle(batch, batch.items[0], "forced_releases")
    del batch
    reg.discard(state)
    gc.collect()
    assert probe() is None
    assert reg.collected == collections.deque()  # it held nothing any more


def test_a_dropped_loop_with_resources_is_collected_then_drained(reg: Registry) -> None:
    """A loop collected while its store holds resources hands its state to ``collected`` and
    rings the wake-up; draining moves it to ENDING with what it held in a batch."""
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "dropped")
    reg.store(state, A, "does not refer to the loop")
    assert reg.wakeup.wait(0)  # add rang it; the reaper thread would be asleep on it now
    type(loop).close(loop)
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    assert reg.wakeup.wait(0)  # the weak reference's callback woke the reaper
    assert list(reg.collected) == [state]
    assert not reg.idle()
    [(drained_state, batch)] = reg.drain_collected()
    assert drained_state is state
    assert state.phase is ENDING
    assert [(i.spec, i.status) for i in batch.items] == [(A, HELD)]
    assert reg.batches_of(state) == [batch]
    assert reg.drain_collected() == []
    reg.settle(batch, batch.items[0], "forced_releases")
    reg.discard(state)
    assert reg.idle()


def test_an_empty_or_discarded_store_is_not_collected(reg: Registry) -> None:
    """Only a state whose store still holds resources is handed over when its loop is collected."""
    loop = asyncio.new_event_loop()
    reg.add(loop, "empty")
    type(loop).close(loop)
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    assert len(reg.collected) == 0
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "discarded")
    reg.store(state, A, "r")
    batch = reg.begin_end(state)
    assert batch is not None
    reg.settle(batch, batch.items[0], "forced_releases")
    reg.discard(state)
    type(loop).close(loop)
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    assert len(reg.collected) == 0


def test_drain_skips_ended_states_and_other_generations(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """A collected state that is already ENDING/GONE, or of a forgotten generation, is dropped."""
    gone = _orphan(reg, _new(loops), "r")
    gone.phase = GONE
    foreign = _orphan(reg, _new(loops), "r")
    foreign.generation = reg.generation - 1  # a registry a fork (or a reset) forgot
    kept = _orphan(reg, _new(loops), "r")
    reg.collected.extend([gone, foreign, kept])
    drained = reg.drain_collected()
    assert [d[0] for d in drained] == [kept]
    assert foreign.phase is OPEN
    assert len(reg.collected) == 0
    for _, batch in drained:
        for item in batch.items:
            reg.settle(batch, item, "forced_releases")


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


def test_dropped_templates_are_forgotten_not_kept_as_dead_references(reg: Registry) -> None:
    """A program that makes and drops templates (one per request, say) does not grow the
    registry: the dead references go once templates() sees them."""
    kept = Template()
    reg.add_template(kept)
    for _ in range(100):
        reg.add_template(Template())  # dropped at once
    gc.collect()
    assert reg.templates() == [kept]
    assert len(reg._templates) == 1


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
    reg.begin_end(other)
    _on_thread(lambda: reg.add(_new(loops), "worker"))
    assert _multithreaded(reg)
    slot_loop = SlotLoop()
    reg.add(slot_loop, "slots")
    old_lock = reg._lock
    generation = reg.generation
    try:
        reg.forget_after_fork()
        assert reg._lock is not old_lock  # a parent thread may have held the old one
        assert reg.generation > generation
        assert reg.templates() == [first, second]
        assert len(reg) == 0
        assert reg.idle()
        assert reg.live_entries() == []
        assert reg.counters().acquisitions == 0
        assert not _multithreaded(reg)
        assert READY_ATTR not in vars(loop)
        assert reg.forgotten  # parked, never released
        fresh, created = reg.add(loop, "child")
        assert created
        assert fresh.store == {}
        third = Template()
        reg.add_template(third)
        assert reg.templates() == [first, second, third]
    finally:
        reg.forgotten.clear()
        slot_loop.close()


def test_clear_for_tests_keeps_templates(
    reg: Registry, loops: list[asyncio.AbstractEventLoop]
) -> None:
    """The test reset forgets loops, counts and collected states, but not the templates."""
    template = Template()
    reg.add_template(template)
    state, _ = reg.add(_new(loops), "x")
    reg.store(state, A, "r")
    reg.collected.append(_orphan(reg, _new(loops), "r"))
    reg.clear_for_tests()
    assert reg.templates() == [template]
    assert len(reg) == 0
    assert len(reg.collected) == 0
    assert reg.counters().acquisitions == 0


# -- the reaper's wake-up ----------------------------------------------------------------------


def test_wakeup_rings_once_and_tolerates_repeats() -> None:
    """ring() leaves the wake-up rung once, however often it is called; wait() consumes it."""
    wakeup = Wakeup()
    assert not wakeup.wait(0)  # starts unrung
    wakeup.ring()
    wakeup.ring()
    assert wakeup.wait(0)
    assert not wakeup.wait(0)
    wakeup.ring()
    assert wakeup.wait(0)


def test_add_wakes_the_reaper(reg: Registry, loops: list[asyncio.AbstractEventLoop]) -> None:
    """Tracking a new loop rings the wake-up, so an idle reaper thread starts passes."""
    reg.wakeup.wait(0)
    loop = _new(loops)
    reg.add(loop, "x")
    assert reg.wakeup.wait(0)
    reg.add(loop, "x")  # already tracked: nothing new to do
    assert not reg.wakeup.wait(0)


def test_every_way_of_changing_a_store_changes_its_hot_copy() -> None:
    """``Store.hot`` (what the hot path reads) has the store's items after every change."""
    c, d = Spec("c", None, None), Spec("d", None, None)
    store = Store()
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
    store = state.store
    assert store is not None
    assert reg.store(state, A, "a")
    assert vars(loop)[READY_ATTR] == {A: "a", STORE_KEY: store}
    batch = reg.take_all(state)
    assert [item.resource for item in batch.items] == ["a"]
    assert vars(loop)[READY_ATTR] == {STORE_KEY: store}
    store[B] = "b"
    store.clear()
    assert vars(loop)[READY_ATTR] == {STORE_KEY: store}
    assert _carried(loop) is store
    for item in batch.items:
        reg.settle(batch, item, "graceful_releases")


def test_a_loop_a_reset_forgot_is_not_forced_when_collected(reg: Registry) -> None:
    """A loop tracked before ``clear_for_tests()`` and collected after it: its state belongs to
    the forgotten generation, so no drain of the new one hands its resources over."""
    loop = asyncio.new_event_loop()
    state, _ = reg.add(loop, "forgotten")
    assert reg.store(state, A, "r")  # the resource does not refer to the loop
    old_collected = reg.collected
    reg.clear_for_tests()
    type(loop).close(loop)
    probe = weakref.ref(loop)
    del loop
    gc.collect()
    assert probe() is None
    assert list(old_collected) == [state]  # the weak reference's callback ran
    reg.collected.extend(old_collected)  # even if the new generation's deque got it
    assert reg.drain_collected() == []
    assert reg.live_entries() == []
    assert state.phase is OPEN
