"""``python -m resourceloop``: command-line entry point.

With no command it lists the commands; ``--version`` prints the version.

Commands:
    demo    Run the seed page's example against a local fake Riot API, with and without
            resourceloop, and report what each way leaves behind.

Only this module imports :mod:`resourceloop.demo`, and only when the command runs, so
``--help`` works without aiohttp.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__

__all__ = ["main"]

_MODES = ("managed", "decorator", "unmanaged", "portal", "baseline")
#: Bounds of the demo's counts: enough for a long soak, not enough to exhaust the machine.
_MAX_THREADS = 256
_MAX_SUMMONERS = 100_000
_MAX_MATCHES = 20  # a match history holds 20 matches

_DEMO_DESCRIPTION = """\
Start a small aiohttp server on 127.0.0.1 (an ephemeral port; nothing leaves this machine)
with Riot-like JSON endpoints and deterministic fake data, then run the example of Pyot's
"Resources" page with resourceloop's names: --threads worker threads, each call on its own
event loop (async_to_sync), each computing a summoner's average match duration with
resourceloop.queue.Queue over its first --matches matches. It runs once per mode:

  managed    async with resource_manager(), Queue() as queue: ...
  decorator  @async_to_sync @resource_manager.as_decorator
  unmanaged  no manager: the close hook releases each loop's session as the loop closes
  portal     @async_to_sync(portal=True): every call on one long-lived loop, one session
             whose connections all calls reuse, released when the portal closes
  baseline   no resourceloop: a hand-written dict from loop to aiohttp.ClientSession,
             the usual workaround; expected to leak sessions and file descriptors

For each mode a table shows: event loops used, TCP connections the server accepted,
sessions created, released gracefully (on
their loop), released forcefully (without it), still open, open file descriptors before and
after, warnings (Python warnings and asyncio/aiohttp/resourceloop log warnings, captured
rather than printed), errors, and wall time. Answers are checked against the server's data.
"""

_DEMO_EPILOG = """\
Ctrl-C stops the run at once: the calls in flight are cancelled on their loops, the worker
threads and the server stopped, and no report is printed.

exit status: 0 if every resourceloop mode released every session, brought the file
descriptors back, and saw no warning, no error and no wrong answer; 1 otherwise (the
baseline may leak); 2 for bad options or a missing aiohttp; 130 after Ctrl-C.
"""


def _count(highest: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``highest``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 1 <= value <= highest:
            raise argparse.ArgumentTypeError(f"expected 1 to {highest}, got {value}")
        return value

    return parse


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"expected 0 to 10000 ms, got {text}")
    return value


def _modes(text: str) -> tuple[str, ...]:
    chosen: list[str] = []
    for name in (part.strip() for part in text.split(",")):
        if name not in _MODES:
            raise argparse.ArgumentTypeError(
                f"unknown mode {name!r}; choose from {', '.join(_MODES)} (comma-separated)"
            )
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resourceloop",
        description="resourceloop: one copy of each async resource per event loop, "
        "always released.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"resourceloop {__version__} (Python {sys.version.split()[0]})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    demo = commands.add_parser(
        "demo",
        help="run the seed example on loopback, with and without resourceloop, and compare",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # An unknown option after ``demo`` is reported with the demo's usage, not the top level's.
    demo.set_defaults(command_parser=demo)
    demo.add_argument(
        "--threads",
        type=_count(_MAX_THREADS),
        default=8,
        metavar="N",
        help="worker threads calling the example at the same time (default: %(default)s; "
        f"at most {_MAX_THREADS})",
    )
    demo.add_argument(
        "--summoners",
        type=_count(_MAX_SUMMONERS),
        default=48,
        metavar="N",
        help="calls per mode, one summoner each, each on a new event loop (default: "
        f"%(default)s; at most {_MAX_SUMMONERS})",
    )
    demo.add_argument(
        "--matches",
        type=_count(_MAX_MATCHES),
        default=5,
        metavar="N",
        help="matches fetched per summoner through the Queue (default: %(default)s, "
        f"as in the seed example; at most {_MAX_MATCHES}, the length of a match history)",
    )
    demo.add_argument(
        "--modes",
        type=_modes,
        default=_MODES,
        metavar="LIST",
        help=f"comma-separated modes to run, in order (default: {','.join(_MODES)})",
    )
    demo.add_argument(
        "--latency",
        type=_latency,
        default=2.0,
        metavar="MS",
        help="milliseconds the server waits before each response (default: %(default)s)",
    )
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the measurements as one JSON document on stdout instead of the table",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="never show the live progress line (otherwise shown on stderr when it is a "
        "terminal, once a run takes longer than 2 s; never in a pipe or a file)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m resourceloop`` with ``argv``; return the exit status."""
    parser = build_parser()
    # argparse reports an option it does not know with the top-level usage, even after a
    # command; parse_known_args lets the command's own parser say it, with its usage.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        where: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        from .demo import run
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "aiohttp":
            print(
                "the demo needs aiohttp: pip install 'resourceloop[aiohttp]'",
                file=sys.stderr,
            )
            return 2
        raise
    settings = run.Settings(
        threads=args.threads,
        summoners=args.summoners,
        matches=args.matches,
        latency_ms=args.latency,
        modes=args.modes,
        progress=not args.no_progress,
    )
    return run.main(settings, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
