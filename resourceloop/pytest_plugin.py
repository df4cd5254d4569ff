"""pytest plugin: fail a test whose resourceloop resources were not released gracefully.

Installed as the ``pytest11`` entry point ``resourceloop``, so pytest loads it automatically (or
with ``-p resourceloop`` when plugin autoloading is disabled). It does nothing until switched on,
with the command-line flag ``--resourceloop-leaks`` or the ini option::

    [tool.pytest.ini_options]
    resourceloop_leaks = true

Switched on, each test is checked once its teardown is over, that is after every function-scoped
fixture has been finalized, including the event loop that pytest-asyncio creates for the test
(its ``Runner`` closes the loop, and the close hook releases the loop's resources gracefully).
The test fails (reported as an error in its teardown, like any problem found after the test body)
when, since it started:

* a resource created during the test is still live on a loop that the test left open (a
  loop closed without the close hook, or abandoned by a finished thread, is released by the
  check's reaper pass first, and then counts below if that release was forced);
* a release function raised (``stats().release_failures`` went up);
* a release timed out (``stats().release_timeouts`` went up, ``ReleaseTimeoutWarning``);
* a resource was released forcefully (``stats().forced_releases`` went up,
  ``ForcedReleaseWarning``).

The message names each template and the origin of its loop (loop class, address and thread).
The check first runs one reaper pass (``resourceloop.reap()``), so a loop closed without the hook
or abandoned by a finished thread is dealt with, and blamed, in the test that caused it.

Each resource is judged against the scope of the loop that holds it. A loop that outlives the
test on purpose, because a fixture of a broader scope made it (pytest-asyncio's loop of a
``loop_scope="module"``/``"session"`` fixture or test, or any broader fixture whose value is an
``asyncio.Runner`` or an event loop), is not "left unclosed" when the test ends: its resources
are released when that loop closes, at the end of its scope, and a release that is forced or
fails then fails the test running at that moment. The counters are process-wide: a forced
release done by the reaper thread for a loop leaked by an earlier test is counted in the test
during which it happens (the plugin runs a reaper pass when it reports a leak, to make that
rare).

It uses only names exported by ``resourceloop``: ``stats()``, ``live_resources()``, ``reap()``
and the warning classes.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
import weakref
from collections.abc import Generator
from typing import Any, Final

import pytest

import resourceloop
from resourceloop.warnings import ForcedReleaseWarning, ReleaseTimeoutWarning

__all__ = ["LeakChecker"]

_COUNTERS: Final = (
    ("forced_releases", "resource(s) released forcefully"),
    ("release_failures", "release function(s) raised"),
    ("release_timeouts", "release(s) timed out"),
)
_WARNINGS: Final = (ForcedReleaseWarning, ReleaseTimeoutWarning)
_ADVICE: Final = (
    "close the loop (asyncio.run(), asyncio.Runner, loop.close()) or wrap the work in "
    "`async with resource_manager():`"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resourceloop", "resourceloop leak check")
    group.addoption(
        "--resourceloop-leaks",
        action="store_true",
        default=False,
        dest="resourceloop_leaks",
        help="Fail tests whose resourceloop resources were not released gracefully "
        "(left live on an unclosed loop, released forcefully, failed or timed out).",
    )
    parser.addini(
        "resourceloop_leaks",
        type="bool",
        default=False,
        help="Same as --resourceloop-leaks: check every test for resourceloop leaks.",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("resourceloop_leaks") or config.getini("resourceloop_leaks"):
        config.pluginmanager.register(LeakChecker(), "resourceloop-leak-checker")


class _LogCollector(logging.Handler):
    """Keeps the ``resourceloop`` logger's warnings and errors of the test being checked."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # pragma: no cover - a malformed record: keep the raw message
            line = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            line += f": {record.exc_info[1]!r}"
        self.lines.append(line)


class LeakChecker:
    """The per-test check; registered only when the plugin is switched on."""

    def __init__(self) -> None:
        self._logs = _LogCollector()
        self._before_counters: dict[str, int] = {}
        self._before_live: set[tuple[str, str]] = set()
        self._recorded: list[warnings.WarningMessage] = []
        #: Loops made by fixtures of a broader scope than the function: they outlive tests.
        self._scoped_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        value = yield
        if fixturedef.scope != "function":
            loop = _loop_of(value)
            if loop is not None:
                self._scoped_loops.add(loop)
        return value

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        # Inside pytest's own warning capture (which is tryfirst, so outermost): warnings raised
        # during the test come here first, so the check can name them, and are handed back to
        # pytest's warning summary afterwards, unchanged.
        logger = logging.getLogger("resourceloop")
        self._begin()
        logger.addHandler(self._logs)
        try:
            with warnings.catch_warnings(record=True) as recorded:
                self._recorded = recorded
                return (yield)
        finally:
            logger.removeHandler(self._logs)
            self._recorded = []
            for message in recorded:
                item.ihook.pytest_warning_recorded.call_historic(
                    kwargs={
                        "warning_message": message,
                        "when": "runtest",
                        "nodeid": item.nodeid,
                        "location": None,
                    }
                )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        # After the yield every function-scoped fixture is finalized: pytest-asyncio's loop
        # for this test is closed by then, and its resources released by the close hook.
        try:
            result = yield
        except BaseException:
            problems = self._check(item)
            if problems:
                item.add_report_section("teardown", "resourceloop", _format(problems))
            raise
        problems = self._check(item)
        if problems:
            pytest.fail(_format(problems), pytrace=False)
        return result

    def _begin(self) -> None:
        stats = resourceloop.stats()
        self._before_counters = {name: getattr(stats, name) for name, _ in _COUNTERS}
        self._before_live = {(r.template, r.origin) for r in resourceloop.live_resources()}
        self._logs.lines.clear()

    def _check(self, item: pytest.Item) -> list[str]:
        resourceloop.reap()  # closed-without-hook and abandoned loops: release them now
        problems: list[str] = []
        shared_loop = _shares_loop_with_other_tests(item)
        scoped = tuple(_origin_prefix(loop) for loop in list(self._scoped_loops))
        for live in resourceloop.live_resources():
            if (live.template, live.origin) in self._before_live:
                continue
            if live.loop_status in ("idle", "running"):
                if shared_loop or live.origin.startswith(scoped):
                    continue  # judged when that loop closes, at the end of its scope
                problems.append(
                    f"resource {live.template!r} is still live on {live.origin}, a loop the test "
                    f"left unclosed ({live.loop_status}): {_ADVICE}"
                )
            else:  # pragma: no cover - reap() just released these; only a racing thread gets here
                problems.append(
                    f"resource {live.template!r} is still live on {live.origin}, a loop that "
                    f"was {live.loop_status} without releasing it"
                )
        stats = resourceloop.stats()
        counted = False
        for name, what in _COUNTERS:
            delta = getattr(stats, name) - self._before_counters.get(name, 0)
            if delta > 0:
                counted = True
                problems.append(f"{delta} {what} (resourceloop.stats().{name})")
        if problems:
            details = self._details()
            if counted and not details:
                details = [
                    "the warnings that name them were filtered out; run with "
                    "-W always::resourceloop.warnings.ResourceLoopWarning to see them"
                ]
            problems.extend(details)
            # Let what the leak causes next (a left-behind loop's release) happen now, rather
            # than in a later test; it is the leak already reported, not a new problem.
            resourceloop.reap()
            stats = resourceloop.stats()
        self._before_counters = {name: getattr(stats, name) for name, _ in _COUNTERS}
        return problems

    def _details(self) -> list[str]:
        details = [
            f"{m.category.__name__}: {m.message}"
            for m in self._recorded
            if isinstance(m.message, Warning) and issubclass(m.category, _WARNINGS)
        ]
        details.extend(self._logs.lines)
        return details


def _shares_loop_with_other_tests(item: pytest.Item) -> bool:
    """True if pytest-asyncio runs this test on a loop broader than the function."""
    marker = item.get_closest_marker("asyncio")
    if marker is None:
        return False
    scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        try:
            scope = item.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio is not installed
            return False
    return bool(scope) and scope != "function"


def _loop_of(value: object) -> asyncio.AbstractEventLoop | None:
    """The event loop a fixture's value is or runs (an ``asyncio.Runner``'s), if any."""
    if isinstance(value, asyncio.AbstractEventLoop):
        return value
    if isinstance(value, getattr(asyncio, "Runner", ())):
        try:
            return value.get_loop()  # type: ignore[attr-defined, no-any-return]
        except RuntimeError:  # closed already
            return None
    return None


def _origin_prefix(loop: asyncio.AbstractEventLoop) -> str:
    """How ``LiveResource.origin`` starts for a resource of ``loop``: class and address."""
    return f"{type(loop).__name__} {id(loop):#x} "


def _format(problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"resourceloop: this test's resources were not released gracefully:\n{lines}"
