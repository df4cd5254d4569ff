"""Running the demo's modes, and what each one measures.

The modes are in ``modes`` and the report in ``report``; this module runs each selected mode
against the demo server, measures it, and handles Ctrl-C.

For each mode it measures, rather than assumes: distinct loops, sessions created and released
(from ``resourceloop.stats()``; for the baseline, from its dict), sessions still open, file
descriptors of this process before and after (sockets the demo server accepted are not
counted, so its side of a connection closing a moment later cannot blur the numbers), TCP
connections the server accepted (one per call and more without a portal; reused with it), Python
warnings and warning/error log records of ``asyncio``, ``aiohttp`` and ``resourceloop``,
errors (failed calls, wrong answers, unraisable exceptions) and wall time.
"""

from __future__ import annotations

import gc
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Final

import resourceloop
from resourceloop import sync

from . import lol, modes
from .measure import Capture, Progress, block_interrupts_in_this_thread, count_fds, summarize
from .modes import MODES, RESOURCELOOP_MODES, BaselineSessions, Settings
from .report import ModeResult, format_banner, format_report, report_json
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

#: The exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED: Final = 130

_WAIT_SLICE: Final = 0.25  # seconds the main thread waits for an event between two looks


def _distinct_loops() -> int:
    return len({id(loop) for loop in modes.loops})  # all still referenced, so ids are distinct


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
        function = modes.FUNCTIONS[mode]
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
            events = modes.calls.events
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
                if modes.calls.stop_requested:
                    raise KeyboardInterrupt
                try:
                    # In slices: a Ctrl-C the kernel hands to another thread (one that does not
                    # block SIGINT, say a thread of the user's) runs our handler only once the
                    # main thread runs Python code again, not when the wait is interrupted.
                    index = events.get(timeout=_WAIT_SLICE)
                except queue.Empty:
                    continue
                if index == modes.WAKE:
                    continue
                if on_running is not None:  # the first call is running (or already over)
                    on_running()
                    on_running = None
                if index == modes.STARTED:
                    continue
                finished += 1
                if submitted < len(names) and not modes.calls.stop_requested:
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
            modes.calls.cancel_all()
            pool.shutdown(wait=True, cancel_futures=True)
            # Let go of what the cancelled calls hold (their tracebacks reference their
            # sessions) while the capture is still active: the baseline's sessions are never
            # closed, and "Unclosed client session" belongs to this mode, not to the exit.
            futures.clear()
            if baseline is not None:
                baseline.sessions.clear()
            modes.loops.clear()
            gc.collect()
            raise
        finally:
            pool.shutdown(wait=True)
            modes.calls.reset()
        wall = time.perf_counter() - start
        if mode == "portal":
            sync.portal().close()  # releases its session, on its loop; the next call gets a new one
        loops = _distinct_loops()
        modes.loops.clear()
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
            if modes.calls.stop_requested:
                raise KeyboardInterrupt
            results.append(run_mode(mode, server, settings, progress, on_running))
            on_running = None
    if modes.calls.stop_requested:  # Ctrl-C after the last call: still an interrupted run
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
        if modes.calls.stop_requested:
            os.write(2, b"\nresourceloop demo: interrupted again: exiting without cleaning up\n")
            os._exit(EXIT_INTERRUPTED)
        modes.calls.request_stop()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        modes.calls.stop_requested = False


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
