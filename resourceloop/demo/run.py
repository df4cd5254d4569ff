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
import os
import queue
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Final

import aiohttp

import resourceloop
from resourceloop import resource_manager, sync
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync

from . import lol
from .measure import Capture, Progress, block_interrupts_in_this_thread, count_fds, summarize
from .server import DemoServer, expected_average_duration_millis

__all__ = [
    "EXIT_INTERRUPTED",
    "MODES",
    "RESOURCELOOP_MODES",
    "ModeResult",
    "Settings",
    "main",
    "run_demo",
]

MODES: Final = ("managed", "decorator", "unmanaged", "portal", "baseline")
RESOURCELOOP_MODES: Final = ("managed", "decorator", "unmanaged", "portal")
#: The exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED: Final = 130

# -- the seed's example, once per mode ----------------------------------------------------------

_loops: list[asyncio.AbstractEventLoop] = []  # every loop a call ran on, during one mode


def _note_loop() -> None:
    _loops.append(asyncio.get_running_loop())  # list.append is atomic: no lock needed


#: What a worker or the SIGINT handler puts on ``_Calls.events`` besides a finished call's index.
_STARTED: Final = -1  # the first call of the mode is running on its loop
_WAKE: Final = -2  # Ctrl-C: look at ``_Calls.stop_requested``
_WAIT_SLICE: Final = 0.25  # seconds the main thread waits for an event between two looks


class _Calls:
    """The calls of the running mode, so that Ctrl-C can stop them at once and cleanly.

    The main thread sleeps only in ``events.get()``. Workers put a finished call's index there
    (from the future's done callback) and the SIGINT handler puts ``_WAKE``: a
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
        if not self._started:  # a duplicate _STARTED is harmless
            self._started = True
            self.events.put(_STARTED)

    def leave(self) -> None:
        task = asyncio.current_task()
        with self._lock:
            self._running.pop(task, None)  # type: ignore[arg-type]

    def request_stop(self) -> None:
        """From the SIGINT handler: note it, wake the main thread. Reentrant, never raises."""
        self.stop_requested = True
        self.events.put(_WAKE)

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


_calls = _Calls()


async def _average(summoner_name: str, matches: int) -> float:
    """The body of the seed's example: average duration of a summoner's first matches."""
    _calls.enter()
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
        _calls.leave()


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


def run_mode(
    mode: str,
    server: DemoServer,
    settings: Settings,
    progress: Progress,
    on_running: Callable[[], None] | None = None,
) -> ModeResult:
    """Run the example in ``mode`` and measure it.

    ``on_running`` is called once the first call of the mode is running on its loop. On
    ``KeyboardInterrupt`` the calls in flight are cancelled on their loops, the others are
    never started, and the worker threads are joined before the exception propagates.
    """
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
        pool = ThreadPoolExecutor(
            settings.threads,
            thread_name_prefix=f"demo-{mode}",
            initializer=block_interrupts_in_this_thread,
        )
        futures: dict[int, Future[float]] = {}
        try:
            # At most two calls per thread are queued at any time: Ctrl-C has little to
            # cancel, and 100,000 summoners do not mean 100,000 futures.
            window = 2 * settings.threads
            events = _calls.events
            submitted = 0

            def submit_next() -> None:
                nonlocal submitted
                index = submitted
                submitted += 1
                future = pool.submit(function, names[index], settings.matches)
                future.add_done_callback(progress.advance)
                future.add_done_callback(lambda _: events.put(index))
                futures[index] = future

            while submitted < min(window, len(names)):
                submit_next()
            finished = 0
            while finished < len(names):
                if _calls.stop_requested:
                    raise KeyboardInterrupt
                try:
                    # In slices: a Ctrl-C the kernel hands to another thread (one that does not
                    # block SIGINT, say a thread of the user's) runs our handler only once the
                    # main thread runs Python code again, not when the wait is interrupted.
                    index = events.get(timeout=_WAIT_SLICE)
                except queue.Empty:
                    continue
                if index == _WAKE:
                    continue
                if on_running is not None:  # the first call is running (or already over)
                    on_running()
                    on_running = None
                if index == _STARTED:
                    continue
                finished += 1
                if submitted < len(names) and not _calls.stop_requested:
                    submit_next()
                name = names[index]
                try:
                    value = futures.pop(index).result()
                except Exception as exc:
                    capture.errors.append(f"{name}: {exc!r}")
                    continue
                expected = expected_average_duration_millis(name, settings.matches)
                if math.isclose(value, expected):
                    correct += 1
                else:
                    capture.errors.append(f"{name}: got {value}, expected {expected}")
        except BaseException:
            # Ctrl-C (or any failure here): cancel the calls in flight on their own loops,
            # drop the ones not started, and wait for the workers, whose loops then close and
            # release their sessions, before the server goes away under them.
            _calls.cancel_all()
            pool.shutdown(wait=True, cancel_futures=True)
            # Let go of what the cancelled calls hold (their tracebacks reference their
            # sessions) while the capture is still active: the baseline's sessions are never
            # closed, and "Unclosed client session" belongs to this mode, not to the exit.
            futures.clear()
            if baseline is not None:
                baseline.sessions.clear()
            _loops.clear()
            gc.collect()
            raise
        finally:
            pool.shutdown(wait=True)
            _calls.reset()
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


def run_demo(
    settings: Settings, on_running: Callable[[], None] | None = None
) -> tuple[DemoServer, list[ModeResult]]:
    """Start the server, run every selected mode in turn, stop the server.

    ``on_running`` is called once, as soon as the first call of the first mode is running.
    """
    total = settings.summoners * len(settings.modes)
    results: list[ModeResult] = []
    with (
        DemoServer(latency=settings.latency_ms / 1000) as server,
        Progress(total, settings.progress) as progress,
    ):
        for mode in settings.modes:
            if _calls.stop_requested:
                raise KeyboardInterrupt
            results.append(run_mode(mode, server, settings, progress, on_running))
            on_running = None
    if _calls.stop_requested:  # Ctrl-C after the last call: still an interrupted run
        raise KeyboardInterrupt
    return server, results


@contextmanager
def _interruptible() -> Iterator[None]:
    """While active, the first Ctrl-C stops the run at its next step (``run_mode`` then
    cancels the calls in flight and raises ``KeyboardInterrupt`` itself, at a safe point), and
    a second one during that cleanup exits at once, with status 130 and no traceback.

    Only in the main thread, and only when SIGINT has Python's default handler; otherwise
    Ctrl-C raises ``KeyboardInterrupt`` wherever it lands, and ``run_mode`` still cleans up.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if _calls.stop_requested:
            os.write(2, b"\nresourceloop demo: interrupted again: exiting without cleaning up\n")
            os._exit(EXIT_INTERRUPTED)
        _calls.request_stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _calls.stop_requested = False


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


def format_banner(settings: Settings) -> str:
    """The first line of the table output, printed when the first call is running."""
    return (
        f"resourceloop demo: {settings.summoners} summoners x {settings.matches} matches per "
        f"mode, {settings.threads} threads, each call on its own event loop, on the portal's "
        "one loop in portal mode (Ctrl-C stops it)"
    )


def main(settings: Settings, *, as_json: bool = False) -> int:
    """Run the demo and print its report; return the exit status.

    Ctrl-C stops the run: the calls in flight are cancelled, the worker threads joined, the
    server stopped; a line on stderr says so, no report is printed, and the status is 130.
    """

    def announce() -> None:
        print(format_banner(settings), flush=True)

    try:
        with _interruptible():
            server, results = run_demo(settings, None if as_json else announce)
    except KeyboardInterrupt:
        print(
            "resourceloop demo: interrupted (Ctrl-C); calls in flight cancelled, worker "
            "threads and server stopped, no report",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    if as_json:
        print(report_json(settings, server, results))
    else:
        print(format_report(settings, server, results))
    return 1 if any(r.leaked for r in results if r.uses_resourceloop) else 0
