"""Measuring what a mode leaves behind: file descriptors, warnings, log records, errors.

Nothing here creates a resource template, so tests may import it in-process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TextIO

__all__ = [
    "PROGRESS_AFTER",
    "Capture",
    "Progress",
    "block_interrupts_in_this_thread",
    "count_fds",
    "summarize",
]

PROGRESS_AFTER: Final = 2.0  # seconds before the progress line appears


def block_interrupts_in_this_thread() -> None:
    """Block SIGINT in the calling (non-main) thread and in the threads it starts from now on.

    The kernel hands a process-directed SIGINT (Ctrl-C) to any thread that does not block it.
    Python only runs its handler in the main thread, and a main thread asleep in
    ``Future.result()`` wakes only if the signal interrupted *its* wait. With every other
    thread of the demo blocking SIGINT (workers, their loops' helper threads, the reaper they
    start, the server, the progress line), Ctrl-C always lands in the main thread at once.
    """
    if hasattr(signal, "pthread_sigmask"):  # POSIX; elsewhere Ctrl-C reaches the main thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _socket_inodes_on_port(port: int) -> set[int]:
    """Inodes of the TCP sockets whose local port is ``port`` (Linux ``/proc/net``)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                next(file, None)
                for line in file:
                    fields = line.split()
                    if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(int(fields[9]))
        except OSError:
            continue
    return inodes


def count_fds(exclude_port: int | None = None) -> int:
    """Open file descriptors of this process, minus sockets bound locally to ``exclude_port``.

    Reads ``/proc/self/fd`` (``/dev/fd`` elsewhere, where nothing is excluded).
    """
    fd_dir = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    # The server's thread accepts and closes sockets while we look: read its sockets before
    # and after listing ours, so one accepted or closed in between is still recognized.
    excluded = _socket_inodes_on_port(exclude_port) if exclude_port else set()
    targets = []
    for name in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(os.path.join(fd_dir, name)))
        except OSError:
            continue  # the descriptor of the listing itself, already closed
    if exclude_port:
        excluded |= _socket_inodes_on_port(exclude_port)
    return sum(
        1
        for target in targets
        if not (target.startswith("socket:[") and int(target[8:-1]) in excluded)
    )


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+|(?<=fd=)\d+|\d{4,}")


class Capture:
    """Collects warnings, log records and unraisable exceptions while active.

    Python warnings are recorded (all of them, ``ResourceWarning`` included, which Python hides
    by default); warning and error records of the ``asyncio``, ``aiohttp`` and ``resourceloop``
    loggers are kept instead of printed; unraisable exceptions (errors in ``__del__``) count as
    errors. Active for one mode at a time, in the main thread.
    """

    LOGGERS: Final = ("asyncio", "aiohttp", "resourceloop")

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: list[str] = []

    @contextmanager
    def active(self) -> Iterator[Capture]:
        handler = _ListHandler(self)
        loggers = [logging.getLogger(name) for name in self.LOGGERS]
        saved = [(logger.propagate, logger.level) for logger in loggers]
        previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        try:
            with warnings.catch_warnings():
                # Not record=True: a recorded WarningMessage keeps its ``source`` alive (aiohttp
                # passes the unclosed session), which would delay what the warning is about.
                warnings.simplefilter("always")
                warnings.showwarning = self._show
                for logger in loggers:
                    logger.addHandler(handler)
                    logger.propagate = False
                    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
                        logger.setLevel(logging.WARNING)
                try:
                    yield self
                finally:
                    for logger, (propagate, level) in zip(loggers, saved, strict=True):
                        logger.removeHandler(handler)
                        logger.propagate = propagate
                        logger.setLevel(level)
        finally:
            sys.unraisablehook = previous_hook

    def _show(  # noqa: PLR0917 - the signature of warnings.showwarning
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        self.warnings.append(f"{category.__name__}: {message}")

    def _unraisable(self, unraisable: Any) -> None:
        self.errors.append(f"{unraisable.err_msg or 'Exception ignored'}: {unraisable.exc_value!r}")


class _ListHandler(logging.Handler):
    def __init__(self, capture: Capture) -> None:
        super().__init__(logging.WARNING)
        self._capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        message = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            message += f": {record.exc_info[1]!r}"
        # aiohttp reports unclosed sessions and connectors through the asyncio exception
        # handler at ERROR level: they are warnings about a leak, not failures of the call.
        if record.levelno >= logging.ERROR and "Unclosed" not in message:
            self._capture.errors.append(message)
        else:
            self._capture.warnings.append(message)


def summarize(messages: Sequence[str], limit: int = 8) -> list[str]:
    """The most frequent messages, addresses masked, as ``"<count> x <message>"``."""
    counts = Counter(_ADDRESS.sub("...", m.splitlines()[0] if m else m)[:120] for m in messages)
    return [f"{n} x {text}" for text, n in counts.most_common(limit)]


class Progress:
    """A live progress line on stderr, on a terminal only, once the run passes ``PROGRESS_AFTER``.

    The line is redrawn in place (``\\r``) and erased when the run ends. When the stream is not
    a terminal (a pipe, a file, a CI log) nothing is written at all: a line per interval would
    pile up in the log, and a snapshot such as "189/192 calls done" read later looks as if
    calls went missing.
    """

    def __init__(
        self,
        total: int,
        enabled: bool,
        stream: TextIO | None = None,
        after: float = PROGRESS_AFTER,
    ) -> None:
        stream = sys.stderr if stream is None else stream
        self.total = total
        self.done = 0
        self.mode = ""
        self._enabled = enabled and stream.isatty()
        self._stream = stream
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._shown = False
        self._after = after
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)

    @property
    def enabled(self) -> bool:
        """Whether the line can appear: asked for, and the stream is a terminal."""
        return self._enabled

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._shown:
            self._stream.write("\r" + " " * 72 + "\r")
            self._stream.flush()

    def advance(self, _: object = None) -> None:
        with self._lock:
            self.done += 1

    def _run(self) -> None:
        block_interrupts_in_this_thread()
        if self._stop.wait(self._after):
            return
        while True:
            elapsed = time.monotonic() - self._start
            line = (
                f"demo: {self.mode}: {self.done}/{self.total} calls done (all modes), "
                f"{elapsed:.1f} s"
            )
            self._stream.write(f"\r{line:<72}")
            self._stream.flush()
            self._shown = True
            if self._stop.wait(0.2):
                return
