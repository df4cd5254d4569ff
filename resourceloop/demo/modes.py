"""The seed page's example, once per mode, and the settings that pick the modes.

Every mode runs the seed page's example: ``threads`` worker threads, each call on its own event
loop (``async_to_sync`` makes one per call), each computing a summoner's average match duration
with a :class:`resourceloop.queue.Queue` against the demo server. The modes differ only in how
the HTTP sessions are managed:

``managed``
    ``async with resource_manager(), Queue() as queue:``, as in the seed's first example.
``decorator``
    ``@async_to_sync @resource_manager.as_decorator``, the seed's second example.
``unmanaged``
    No manager at all: the close hook releases each loop's session when ``async_to_sync``
    closes the loop (the reaper would, for a loop closed without it).
``portal``
    The first example's function with ``@async_to_sync(portal=True)``: every call runs on the
    one loop of the default portal, whose session (and its connections) every call reuses; the
    mode closes the portal at its end, which releases the session gracefully.
``baseline``
    No resourceloop: a hand-written dict from loop to ``aiohttp.ClientSession``, as people do
    it today. Its sessions are never closed; the report shows what that costs.

The calls of a mode report to ``calls`` (a :class:`Calls`), so that ``run`` can wait for them
and Ctrl-C can cancel them on their own loops; ``loops`` records the loop each call ran on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import statistics
import threading
from collections.abc import Callable
from typing import Final

import aiohttp

from resourceloop import resource_manager
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync

from . import lol

__all__ = [
    "FUNCTIONS",
    "MODES",
    "RESOURCELOOP_MODES",
    "STARTED",
    "WAKE",
    "BaselineSessions",
    "Calls",
    "Settings",
    "calls",
    "loops",
]

MODES: Final = ("managed", "decorator", "unmanaged", "portal", "baseline")
RESOURCELOOP_MODES: Final = ("managed", "decorator", "unmanaged", "portal")

# -- the seed's example, once per mode ----------------------------------------------------------

loops: list[asyncio.AbstractEventLoop] = []  # every loop a call ran on, during one mode


def _note_loop() -> None:
    loops.append(asyncio.get_running_loop())  # list.append is atomic: no lock needed


#: What a worker or the SIGINT handler puts on ``Calls.events`` besides a finished call's index.
STARTED: Final = -1  # the first call of the mode is running on its loop
WAKE: Final = -2  # Ctrl-C: look at ``Calls.stop_requested``


class Calls:
    """The calls of the running mode, so that Ctrl-C can stop them at once and cleanly.

    The main thread sleeps only in ``events.get()``. Workers put a finished call's index there
    (from the future's done callback) and the SIGINT handler puts ``WAKE``: a
    ``queue.SimpleQueue``'s ``put`` is reentrant, safe in a signal handler, unlike the locks
    in ``Future.result()`` or ``Event.wait()``, where an exception raised by a handler can
    leave a lock in a broken state (seen here: "release unlocked lock"). The handler therefore
    never raises; it sets ``stop_requested``, and the main thread stops at its next look.

    ``enter``/``leave`` run on each call's loop (in a worker thread); ``cancel_all`` runs in
    the main thread. ``_lock`` guards ``_running`` and ``_cancelled`` and is held only to read
    or change them: the cancellations are sent after it is released, with
    ``call_soon_threadsafe``, the only way to touch another thread's loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[asyncio.Task[object], asyncio.AbstractEventLoop] = {}
        self._cancelled = False
        self._started = False
        self.stop_requested = False  # set by the SIGINT handler, read by the main thread
        self.events: queue.SimpleQueue[int] = queue.SimpleQueue()

    def enter(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._cancelled:  # started after Ctrl-C: do nothing, as a cancelled call
                raise asyncio.CancelledError
            self._running[task] = asyncio.get_running_loop()
        if not self._started:  # a duplicate STARTED is harmless
            self._started = True
            self.events.put(STARTED)

    def leave(self) -> None:
        task = asyncio.current_task()
        with self._lock:
            self._running.pop(task, None)  # type: ignore[arg-type]

    def request_stop(self) -> None:
        """From the SIGINT handler: note it, wake the main thread. Reentrant, never raises."""
        self.stop_requested = True
        self.events.put(WAKE)

    def cancel_all(self) -> None:
        """Cancel every call in flight and every call that starts from now on."""
        with self._lock:
            self._cancelled = True
            running = list(self._running.items())
        for task, loop in running:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # that call ended and closed its loop meanwhile
                pass

    def reset(self) -> None:
        """Ready for the next mode (``stop_requested`` stays: it ends the whole run)."""
        with self._lock:
            self._cancelled = False
            self._running.clear()
        self._started = False
        self.events = queue.SimpleQueue()


calls = Calls()


async def _average(summoner_name: str, matches: int) -> float:
    """The body of the seed's example: average duration of a summoner's first matches."""
    calls.enter()
    try:
        _note_loop()
        async with Queue() as queue:
            summoner = await lol.Summoner(name=summoner_name).get()
            history = await summoner.match_history.get()
            for match in history.matches[:matches]:
                await queue.put(match.get())
            first_matches: list[lol.Match] = await queue.join()
        return statistics.mean([match.info.duration_millis for match in first_matches] or [0])
    finally:
        calls.leave()


@async_to_sync
async def average_managed(summoner_name: str, matches: int = 5) -> float:
    """The seed's first example: the body inside ``async with resource_manager()``."""
    async with resource_manager():
        return await _average(summoner_name, matches)


@async_to_sync
@resource_manager.as_decorator
async def average_decorated(summoner_name: str, matches: int = 5) -> float:
    """The seed's second example: ``@async_to_sync @resource_manager.as_decorator``."""
    return await _average(summoner_name, matches)


@async_to_sync(portal=True)
async def average_on_portal(summoner_name: str, matches: int = 5) -> float:
    """The seed's first example on the default portal: the manager nests in the portal's."""
    async with resource_manager():
        return await _average(summoner_name, matches)


@async_to_sync
async def average_unmanaged(summoner_name: str, matches: int = 5) -> float:
    """The example with no manager: what existing code looks like, unchanged."""
    return await _average(summoner_name, matches)


class BaselineSessions:
    """Today's usual workaround: one ``ClientSession`` per loop in a dict, never closed.

    Nothing tells this code when a loop ends, so it cannot close the session at the right
    time; closing it after the loop closed is no longer possible (``await session.close()``
    needs the loop).
    """

    def __init__(self) -> None:
        self.sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lock = threading.Lock()

    async def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self.sessions.get(loop)
        if session is None:
            session = aiohttp.ClientSession()
            with self._lock:
                self.sessions[loop] = session
        return session


FUNCTIONS: Final[dict[str, Callable[[str, int], float]]] = {
    "managed": average_managed,
    "decorator": average_decorated,
    "unmanaged": average_unmanaged,
    "portal": average_on_portal,
    "baseline": average_unmanaged,  # the same code, with the hand-written sessions
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the demo runs; see ``python -m resourceloop demo --help``."""

    threads: int = 8
    summoners: int = 48
    matches: int = 5
    latency_ms: float = 2.0
    modes: tuple[str, ...] = MODES
    progress: bool = True

    def names(self) -> list[str]:
        return [f"summoner-{i:03d}" for i in range(self.summoners)]
