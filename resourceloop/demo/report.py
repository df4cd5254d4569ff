"""The demo's report: what one mode measured, as a table with notes, or as JSON.

``run`` measures each mode into a :class:`ModeResult`; this module only judges
(:attr:`ModeResult.leaked`) and prints. The table and the JSON carry the same fields, so
``--json`` is the text report without the prose.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Final

import resourceloop

from .modes import Settings
from .server import DemoServer

__all__ = ["ModeResult", "format_banner", "format_report", "format_table", "report_json"]


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
    """The first line of the table output, printed when the first call is running.

    "Summoners" and "matches" are the players and games of Pyot's example (the Riot Games
    API); the header says so, and names the baseline for what it is.
    """
    return (
        f"resourceloop demo: {settings.summoners} summoners x {settings.matches} matches per "
        f"mode, {settings.threads} threads, each call on its own event loop, on the portal's "
        "one loop in portal mode (Ctrl-C stops it)\n"
        "Pyot's example: each call looks up one summoner (a player) on a fake Riot Games API "
        "on 127.0.0.1\nand averages the duration of their first matches. The baseline mode "
        "runs it without resourceloop."
    )
