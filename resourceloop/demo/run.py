"""The demo's modes, what each one measures, and the report.

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

For each mode it measures, rather than assumes: distinct loops, sessions created and released
(from ``resourceloop.stats()``; for the baseline, from its dict), sessions still open, file
descriptors of this process before and after (sockets the demo server accepted are not
counted, so its side of a connection closing a moment later cannot blur the numbers), TCP
connections the server accepted (one per call and more without a portal; reused with it), Python
warnings and warning/error log records of ``asyncio``, ``aiohttp`` and ``resourceloop``,
errors (failed calls, wrong answers, unraisable exceptions) and wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

import aiohttp

import resourceloop
from resourceloop import resource_manager, sync
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync

from . import lol
from .measure import Capture, Progress, count_fds, summarize
from .server import DemoServer, expected_average_duration_millis

__all__ = ["MODES", "RESOURCELOOP_MODES", "ModeResult", "Settings", "main", "run_demo"]

MODES: Final = ("managed", "decorator", "unmanaged", "portal", "baseline")
RESOURCELOOP_MODES: Final = ("managed", "decorator", "unmanaged", "portal")

# -- the seed's example, once per mode ----------------------------------------------------------

_loops: list[asyncio.AbstractEventLoop] = []  # every loop a call ran on, during one mode


def _note_loop() -> None:
    _loops.append(asyncio.get_running_loop())  # list.append is atomic: no lock needed


async def _average(summoner_name: str, matches: int) -> float:
    """The body of the seed's example: average duration of a summoner's first matches."""
    _note_loop()
    async with Queue() as queue:
        summoner = await lol.Summoner(name=summoner_name).get()
        history = await summoner.match_history.get()
        for match in history.matches[:matches]:
            await queue.put(match.get())
        first_matches: list[lol.Match] = await queue.join()
    return statistics.mean([match.info.duration_millis for match in first_matches] or [0])


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


_FUNCTIONS: Final[dict[str, Callable[[str, int], float]]] = {
    "managed": average_managed,
    "decorator": average_decorated,
    "unmanaged": average_unmanaged,
    "portal": average_on_portal,
    "baseline": average_unmanaged,  # the same code, with the hand-written sessions
}

# -- measuring ----------------------------------------------------------------------------------


# -- running a mode -----------------------------------------------------------------------------


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


@dataclasses.dataclass
class ModeResult:
    """The measurements of one mode (the JSON output's ``modes`` entries)."""

    mode: str
    uses_resourceloop: bool
    calls: int
    correct_answers: int
    loops: int
    connections: int
    sessions_created: int
    released_gracefully: int
    released_forcefully: int
    sessions_still_open: int
    fds_before: int
    fds_after: int
    warnings: int
    errors: int
    wall_time_s: float
    warning_samples: list[str]
    error_samples: list[str]
    #: Baseline only: fds once the leaked sessions are dropped and collected (as at exit).
    fds_after_dropping_sessions: int | None = None
    #: Baseline only: warnings printed by dropping them.
    warnings_when_dropped: int | None = None

    @property
    def leaked(self) -> bool:
        """Anything left open, lost, or complained about."""
        return bool(
            self.sessions_still_open
            or self.fds_after > self.fds_before
            or self.errors
            or self.warnings
            or self.released_gracefully + self.released_forcefully != self.sessions_created
            or self.correct_answers != self.calls
        )


def _distinct_loops() -> int:
    return len({id(loop) for loop in _loops})  # all still referenced, so ids are distinct


def run_mode(mode: str, server: DemoServer, settings: Settings, progress: Progress) -> ModeResult:
    """Run the example in ``mode`` and measure it."""
    progress.mode = mode
    names = settings.names()
    baseline = BaselineSessions() if mode == "baseline" else None
    lol.use(server.url, baseline.get if baseline is not None else None)
    template = lol.http.name
    capture = Capture()
    gc.collect()
    fds_before = count_fds(server.port)
    connections_before = server.connections
    before = resourceloop.stats()
    correct = 0
    dropped_fds: int | None = None
    dropped_warnings: int | None = None
    with capture.active():
        start = time.perf_counter()
        function = _FUNCTIONS[mode]
        with ThreadPoolExecutor(settings.threads, thread_name_prefix=f"demo-{mode}") as pool:
            futures: list[Future[float]] = []
            for name in names:
                future = pool.submit(function, name, settings.matches)
                future.add_done_callback(progress.advance)
                futures.append(future)
            for name, future in zip(names, futures, strict=True):
                try:
                    value = future.result()
                except Exception as exc:
                    capture.errors.append(f"{name}: {exc!r}")
                    continue
                expected = expected_average_duration_millis(name, settings.matches)
                if math.isclose(value, expected):
                    correct += 1
                else:
                    capture.errors.append(f"{name}: got {value}, expected {expected}")
        wall = time.perf_counter() - start
        if mode == "portal":
            sync.portal().close()  # releases its session, on its loop; the next call gets a new one
        loops = _distinct_loops()
        _loops.clear()
        gc.collect()  # whatever leaked and is unreferenced complains now, in this mode
        fds_after = count_fds(server.port)
        after = resourceloop.stats()
        if baseline is None:
            created = after.acquisitions - before.acquisitions
            graceful = after.graceful_releases - before.graceful_releases
            forced = after.forced_releases - before.forced_releases
            still_open = sum(1 for r in resourceloop.live_resources() if r.template == template)
        else:
            created = len(baseline.sessions)
            graceful = sum(1 for s in baseline.sessions.values() if s.closed)
            forced = 0
            still_open = created - graceful
            # What the process would print at exit: drop the sessions, let the GC find them.
            warned = len(capture.warnings) + len(capture.errors)
            baseline.sessions.clear()
            del baseline
            gc.collect()
            dropped_fds = count_fds(server.port)
            dropped_warnings = len(capture.warnings) + len(capture.errors) - warned
    lol.use(server.url)
    return ModeResult(
        mode=mode,
        uses_resourceloop=mode in RESOURCELOOP_MODES,
        calls=len(names),
        correct_answers=correct,
        loops=loops,
        connections=server.connections - connections_before,
        sessions_created=created,
        released_gracefully=graceful,
        released_forcefully=forced,
        sessions_still_open=still_open,
        fds_before=fds_before,
        fds_after=fds_after,
        warnings=len(capture.warnings),
        errors=len(capture.errors),
        wall_time_s=round(wall, 3),
        warning_samples=summarize(capture.warnings),
        error_samples=summarize(capture.errors),
        fds_after_dropping_sessions=dropped_fds,
        warnings_when_dropped=dropped_warnings,
    )


def run_demo(settings: Settings) -> tuple[DemoServer, list[ModeResult]]:
    """Start the server, run every selected mode in turn, stop the server."""
    total = settings.summoners * len(settings.modes)
    with (
        DemoServer(latency=settings.latency_ms / 1000) as server,
        Progress(total, settings.progress) as progress,
    ):
        results = [run_mode(mode, server, settings, progress) for mode in settings.modes]
    return server, results


# -- reporting ----------------------------------------------------------------------------------

_COLUMNS: Final = (
    ("mode", "mode", "<"),
    ("loops", "loops", ">"),
    ("connections", "connections", ">"),
    ("sessions", "sessions_created", ">"),
    ("graceful", "released_gracefully", ">"),
    ("forced", "released_forcefully", ">"),
    ("still open", "sessions_still_open", ">"),
    ("fds before", "fds_before", ">"),
    ("fds after", "fds_after", ">"),
    ("warnings", "warnings", ">"),
    ("errors", "errors", ">"),
    ("wall", "wall_time_s", ">"),
)


def format_table(results: Sequence[ModeResult]) -> str:
    rows = [[title for title, _, _ in _COLUMNS]]
    for result in results:
        row = []
        for _, field, _ in _COLUMNS:
            value = getattr(result, field)
            row.append(f"{value:.2f} s" if field == "wall_time_s" else str(value))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        aligned = zip(row, widths, _COLUMNS, strict=True)
        cells = [f"{cell:{align}{width}}" for cell, width, (_, _, align) in aligned]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_report(settings: Settings, server: DemoServer, results: Sequence[ModeResult]) -> str:
    out = [
        f"resourceloop demo: {settings.summoners} summoners x {settings.matches} matches per "
        f"mode, {settings.threads} threads, each call on its own event loop (on the portal's"
        " one loop in portal mode)",
        f"server: aiohttp on 127.0.0.1 (an ephemeral port), {server.requests} requests "
        f"answered, {settings.latency_ms:g} ms latency each",
        "",
        format_table(results),
        "",
        "loops: event loops the calls ran on; connections: TCP connections the server accepted",
        "(the portal's one session reuses its connections across calls; elsewhere each call's",
        "session opens its own); sessions: aiohttp.ClientSession objects created;",
        "graceful: closed with `await session.close()` on their own loop; forced: closed without",
        "their loop; still open: sessions left open when the mode ended; fds: open file",
        "descriptors of this process (the server's side of each connection not counted).",
    ]
    for result in results:
        notes: list[str] = []
        if result.mode == "baseline":
            notes.append(
                f"{result.sessions_still_open} sessions were still open when the mode ended, "
                f"holding {result.fds_after - result.fds_before} more file descriptors."
            )
            notes.append(
                f"Dropping them (as at interpreter exit) printed {result.warnings_when_dropped} "
                f"warnings; fds then: {result.fds_after_dropping_sessions}."
            )
        notes.extend(f"warning: {line}" for line in result.warning_samples)
        notes.extend(f"error: {line}" for line in result.error_samples)
        if result.correct_answers != result.calls:
            notes.append(f"{result.correct_answers}/{result.calls} answers were correct")
        if notes:
            out.append("")
            out.append(f"{result.mode}:")
            out.extend(f"  {note}" for note in notes)
    managed = [r for r in results if r.uses_resourceloop]
    out.append("")
    if managed:
        bad = [r.mode for r in managed if r.leaked]
        if bad:
            out.append(f"FAIL: resourceloop leaked or complained in: {', '.join(bad)}")
        else:
            out.append(
                "OK: in every resourceloop mode every session was released, the file "
                "descriptors came\nback to where they started, with no warning and no error."
            )
    return "\n".join(out)


def report_json(settings: Settings, server: DemoServer, results: Sequence[ModeResult]) -> str:
    document = {
        "ok": not any(r.leaked for r in results if r.uses_resourceloop),
        "settings": {**dataclasses.asdict(settings), "modes": list(settings.modes)},
        "server": {"requests": server.requests, "latency_ms": settings.latency_ms},
        "resourceloop_version": resourceloop.__version__,
        "modes": [{**dataclasses.asdict(r), "leaked": r.leaked} for r in results],
    }
    return json.dumps(document, indent=2)


def main(settings: Settings, *, as_json: bool = False) -> int:
    """Run the demo and print its report; return the exit status."""
    server, results = run_demo(settings)
    if as_json:
        print(report_json(settings, server, results))
    else:
        print(format_report(settings, server, results))
    return 1 if any(r.leaked for r in results if r.uses_resourceloop) else 0
