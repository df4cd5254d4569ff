"""Recording warnings without keeping what they are about alive.

``warnings.catch_warnings(record=True)`` keeps each ``WarningMessage``, and with it the
warning's ``source``. asyncio's ``BaseEventLoop.__del__`` warns "unclosed event loop" with
``source=self``, so a recorded warning resurrects the very loop being collected. Before 3.15
the collector had already cleared plain weak references by then, so a test's weakref probe
looked dead anyway; from 3.15 on it clears them only after finalizers have run, and a probe of
a resurrected loop stays alive. Tests that prove a loop is collected record here instead: the
category and the text of each warning, no source, no frame.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import attrs

__all__ = ["Warned", "logged", "record_text"]


@attrs.frozen
class Warned:
    """One recorded warning: its category and its message text only."""

    category: type[Warning]
    message: str


@contextmanager
def record_text() -> Iterator[list[Warned]]:
    """Record every warning, from any thread, as a ``Warned`` (as ``catch_warnings`` would).

    Warnings are process-global on CPython builds with the GIL, so this is not for tests that
    run concurrently with other warning-sensitive code; nothing in this suite does.
    """
    recorded: list[Warned] = []

    def show(  # noqa: PLR0917 - the signature of warnings.showwarning
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        recorded.append(Warned(category, str(message)))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show  # catch_warnings puts the original back
        yield recorded


def _timing_report(record: logging.LogRecord) -> bool:
    return record.name == "asyncio" and record.getMessage().startswith("Executing ")


def logged(records: list[logging.LogRecord], logger: str | None = None) -> list[str]:
    """The messages of ``records`` (of ``logger`` only, if given), timing reports left out.

    In debug mode (``-X dev``, ``PYTHONASYNCIODEBUG``) asyncio logs "Executing <Handle ...>
    took 0.2 seconds" for any callback slower than 0.1 s: a fact about the machine's load, not
    about what a test checks.
    """
    return [
        record.getMessage()
        for record in records
        if (logger is None or record.name == logger) and not _timing_report(record)
    ]
