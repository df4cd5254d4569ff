"""Tests for `resourceloop.configure`, the environment, `stats()`, the reaper thread's start and
the ungraceful-loop warning."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import pytest

import resourceloop
from resourceloop import Config, ConfigurationError, ResourceTemplate, _config
from resourceloop.warnings import (
    ForcedReleaseWarning,
    ResourceLoopWarning,
    UngracefulLoopWarning,
)
from tests._env import child_env
from tests._loops import run

T = TypeVar("T")

ENV_VARS = (
    "RESOURCELOOP_REAP_INTERVAL",
    "RESOURCELOOP_RELEASE_TIMEOUT",
    "RESOURCELOOP_CLOSE_HOOK",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from the defaults whatever the calling shell exports."""
    for name in list(os.environ):
        if name.startswith("RESOURCELOOP_") and not name.startswith("RESOURCELOOP_TEST_"):
            monkeypatch.delenv(name)
    _config.reset_for_tests()
    gc.collect()


def reaper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "resourceloop-reaper"]


def make() -> object:
    return object()


# -- configure() -------------------------------------------------------------------------------


def test_configure_changes_only_the_settings_given() -> None:
    """configure() returns the settings in force; omitted ones keep their value."""
    assert resourceloop.configure() == Config(reap_interval=1.0, release_timeout=10.0)
    assert resourceloop.configure().close_hook is True
    assert resourceloop.configure(reap_interval=2.5) == Config(2.5, 10.0, True)
    config = resourceloop.configure(release_timeout=3, close_hook=False)
    assert config == Config(2.5, 3.0, False)
    assert isinstance(config.release_timeout, float)
    assert _config.current() == config
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.reap_interval = 5.0  # type: ignore[misc]


# The wrong type: TypeError. The right type out of range: ValueError.
WRONG_TYPE_NUMBERS: list[object] = [True, False, "1", [1], b"2", object()]
OUT_OF_RANGE_NUMBERS: list[object] = [
    0,
    0.0,
    -1,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    threading.TIMEOUT_MAX * 2,
    10**400,  # an int too large for a float
]
WRONG_TYPE_FLAGS: list[object] = [1, 0, "yes", "false", 1.0, [], object()]


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [("reap_interval", v, TypeError) for v in WRONG_TYPE_NUMBERS]
    + [("release_timeout", v, TypeError) for v in WRONG_TYPE_NUMBERS]
    + [("close_hook", v, TypeError) for v in WRONG_TYPE_FLAGS]
    + [("reap_interval", v, ValueError) for v in OUT_OF_RANGE_NUMBERS]
    + [("release_timeout", v, ValueError) for v in OUT_OF_RANGE_NUMBERS],
)
def test_configure_rejects_bad_values_and_changes_nothing(
    setting: str, value: object, error: type[Exception]
) -> None:
    """The wrong type is a TypeError, out of range a ValueError, each naming the setting and
    the value; no setting changes."""
    before = resourceloop.configure(reap_interval=4.0, release_timeout=6.0, close_hook=False)
    with pytest.raises(error, match=f"^{setting} must be") as info:
        resourceloop.configure(**{setting: value})  # type: ignore[arg-type]
    assert type(info.value) is error
    assert resourceloop.configure() == before
    assert _config.current() == before


@pytest.mark.parametrize("setting", ["reap_interval", "release_timeout"])
def test_configure_names_the_timeout_limit(setting: str) -> None:
    """Past threading.TIMEOUT_MAX, the error names the limit (waits would overflow there)."""

    def configure(seconds: float) -> Config:
        return resourceloop.configure(**{setting: seconds})  # type: ignore[arg-type]

    assert getattr(configure(threading.TIMEOUT_MAX), setting) == threading.TIMEOUT_MAX
    before = configure(5.0)
    with pytest.raises(ValueError, match=r"at most threading\.TIMEOUT_MAX \(\d"):
        configure(threading.TIMEOUT_MAX * 1.5)
    assert resourceloop.configure() == before


def test_configure_validates_everything_before_changing_anything() -> None:
    """One bad setting among good ones leaves all of them as they were."""
    before = resourceloop.configure()
    with pytest.raises(ValueError, match="release_timeout"):
        resourceloop.configure(reap_interval=3.0, release_timeout=-1.0, close_hook=False)
    assert resourceloop.configure() == before


# -- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [(spelling, True) for spelling in _config.TRUE_SPELLINGS]
    + [(spelling, False) for spelling in _config.FALSE_SPELLINGS]
    + [("YES", True), ("On", True), ("No", False), ("FALSE", False)],
)
def test_environment_is_read_on_first_use(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: bool
) -> None:
    """Variables set after import are picked up on first use; explicit settings override them."""
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "0.25")
    monkeypatch.setenv("RESOURCELOOP_RELEASE_TIMEOUT", "7")
    monkeypatch.setenv("RESOURCELOOP_CLOSE_HOOK", text)
    _config.reset_for_tests()
    assert resourceloop.configure() == Config(0.25, 7.0, expected)
    assert resourceloop.configure(release_timeout=2.0) == Config(0.25, 2.0, expected)


def test_close_hook_from_environment_takes_effect_at_first_acquisition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RESOURCELOOP_CLOSE_HOOK=0, set after import, disables the hook for the next loop."""
    monkeypatch.setenv("RESOURCELOOP_CLOSE_HOOK", "0")
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "3600")  # this test reaps by itself
    _config.reset_for_tests()
    released: list[object] = []
    template = ResourceTemplate(make, released.append, name="env-client")

    async def main() -> None:
        await template.acquire()

    with pytest.warns(UngracefulLoopWarning, match="RESOURCELOOP_CLOSE_HOOK"):
        run(main)
    assert released == []  # no hook: closing the loop released nothing
    with pytest.warns(ForcedReleaseWarning, match="'env-client'"):
        resourceloop.reap()
    assert len(released) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RESOURCELOOP_REAP_INTERVAL", "soon"),
        ("RESOURCELOOP_REAP_INTERVAL", "0"),
        ("RESOURCELOOP_REAP_INTERVAL", "-1"),
        ("RESOURCELOOP_REAP_INTERVAL", "nan"),
        ("RESOURCELOOP_REAP_INTERVAL", ""),
        ("RESOURCELOOP_RELEASE_TIMEOUT", "inf"),
        ("RESOURCELOOP_RELEASE_TIMEOUT", "10s"),
        ("RESOURCELOOP_RELEASE_TIMEOUT", "1e300"),  # past threading.TIMEOUT_MAX
        ("RESOURCELOOP_CLOSE_HOOK", "maybe"),
        ("RESOURCELOOP_CLOSE_HOOK", "2"),
        ("RESOURCELOOP_CLOSE_HOOK", " yes "),  # not a documented spelling
        ("RESOURCELOOP_CLOSE_HOOK", "y"),
        ("RESOURCELOOP_CLOSE_HOOK", ""),
    ],
)
def test_bad_environment_value_raises_on_first_use(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A bad variable is a ConfigurationError (a ValueError) naming it, at first use; nothing
    is tracked meanwhile."""
    monkeypatch.setenv(name, value)
    _config.reset_for_tests()
    template = ResourceTemplate(make, name="client")

    async def main() -> None:
        with pytest.raises(ConfigurationError, match=name):
            await template.acquire()

    run(main)
    with pytest.raises(ConfigurationError, match=name):
        resourceloop.configure()
    assert issubclass(ConfigurationError, ValueError)
    assert resourceloop.stats().loops_tracked == 0
    # Once the environment is fixed, the next use works: nothing bad was stored.
    monkeypatch.delenv(name)

    async def fixed() -> None:
        await template.acquire()
        assert resourceloop.stats().resources_live == {"client": 1}

    run(fixed)


def _first_use_through_acquire() -> None:
    async def main() -> None:
        await ResourceTemplate(make, name="client").acquire()

    run(main)


def _first_use_through_a_manager() -> None:
    async def main() -> None:
        async with resourceloop.resource_manager():
            pass

    run(main)


@pytest.mark.parametrize(
    ("first_use", "entry_point"),
    [
        (_first_use_through_acquire, "acquire"),
        (_first_use_through_a_manager, "__aenter__"),
        (resourceloop.configure, "configure"),
    ],
    ids=["acquire", "resource_manager", "configure"],
)
def test_bad_environment_value_has_a_short_traceback(
    monkeypatch: pytest.MonkeyPatch, first_use: Callable[[], object], entry_point: str
) -> None:
    """The error is raised by the public entry point itself, from None: its traceback has
    one frame of resourceloop (that entry point), and no exception chained to it."""
    monkeypatch.setenv("RESOURCELOOP_REAP_INTERVAL", "soon")
    _config.reset_for_tests()
    with pytest.raises(ConfigurationError) as info:
        first_use()
    error = info.value
    assert str(error) == (
        "RESOURCELOOP_REAP_INTERVAL must be a number of seconds, such as 2.5, got 'soon'"
    )
    assert error.__cause__ is None
    assert error.__context__ is None
    assert error.__suppress_context__
    package = Path(resourceloop.__file__).parent
    ours = [
        frame.name
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).is_relative_to(package)
    ]
    assert ours == [entry_point]


SHORT_TRACEBACK_SCRIPT = """
import asyncio
import resourceloop

template = resourceloop.ResourceTemplate(object, name="client")


async def main():
    await template.acquire()


asyncio.run(main())
"""


def test_bad_environment_value_traceback_as_printed() -> None:
    """What a user sees: the traceback ends at ``acquire()``, one line of resourceloop, with
    no "During handling of the above exception" and no parsing frames."""
    result = subprocess.run(
        [sys.executable, "-c", SHORT_TRACEBACK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(checkout_on_path=True, RESOURCELOOP_RELEASE_TIMEOUT="forever"),
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == (
        "resourceloop.ConfigurationError: RESOURCELOOP_RELEASE_TIMEOUT must be a number of "
        "seconds, such as 2.5, got 'forever'"
    )
    assert "During handling" not in result.stderr
    assert "The above exception" not in result.stderr
    ours = [line for line in lines if line.startswith("  File ") and "resourceloop" in line]
    assert len(ours) == 1, result.stderr
    assert ours[0].endswith(", in acquire")
    # asyncio.run's own frames (3 to 5, by Python version), main's, and acquire's: before,
    # the three of resourceloop's parsing below acquire made it about 30 lines.
    assert len(lines) <= 22, result.stderr


def test_close_hook_spellings_are_the_documented_ones() -> None:
    """The spellings the Resources page lists for RESOURCELOOP_CLOSE_HOOK are exactly those
    the code accepts, and the page says letter case does not matter."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "resources.md").read_text()
    (row,) = [line for line in page.splitlines() if line.startswith("| `close_hook` |")]
    documented = re.findall(r"`([^`]+)`/`([^`]+)`", row)
    assert documented == list(zip(_config.FALSE_SPELLINGS, _config.TRUE_SPELLINGS, strict=True))
    assert "any letter case" in row


def test_bad_close_hook_variable_lists_the_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error for a bad RESOURCELOOP_CLOSE_HOOK lists what is accepted."""
    monkeypatch.setenv("RESOURCELOOP_CLOSE_HOOK", "enabled")
    _config.reset_for_tests()
    with pytest.raises(ValueError, match=r"^RESOURCELOOP_CLOSE_HOOK") as info:
        resourceloop.configure()
    assert str(info.value) == (
        "RESOURCELOOP_CLOSE_HOOK must be one of 1, true, yes, on (on) or 0, false, no, off "
        "(off), in any letter case, got 'enabled'"
    )


def test_misspelled_variable_warns_with_the_close_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESOURCELOOP_RELASE_TIMEOUT is not silently ignored: a warning names it, suggests the
    close match and lists every variable; the settings stay the defaults."""
    monkeypatch.setenv("RESOURCELOOP_RELASE_TIMEOUT", "5")
    _config.reset_for_tests()
    with pytest.warns(RuntimeWarning) as caught:
        config = resourceloop.configure()
    assert config == Config()
    (warning,) = caught
    assert str(warning.message) == (
        "unknown environment variable RESOURCELOOP_RELASE_TIMEOUT is ignored; did you mean "
        "RESOURCELOOP_RELEASE_TIMEOUT? resourceloop reads RESOURCELOOP_REAP_INTERVAL, "
        "RESOURCELOOP_RELEASE_TIMEOUT, RESOURCELOOP_CLOSE_HOOK"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resourceloop.configure() == Config()  # read once: no second warning


def test_unknown_variable_without_a_close_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable like nothing known gets no suggestion; the test suite's own are left alone."""
    monkeypatch.setenv("RESOURCELOOP_COLOR", "1")
    monkeypatch.setenv("RESOURCELOOP_TEST_SOMETHING", "x")
    monkeypatch.setenv("RESOURCELOOP_CLOSE_HOOK", "off")
    _config.reset_for_tests()
    with pytest.warns(RuntimeWarning) as caught:
        config = resourceloop.configure()
    assert config == Config(close_hook=False)  # the known one still applies
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith("unknown environment variable RESOURCELOOP_COLOR is ignored; ")
    assert "did you mean" not in message
    assert "RESOURCELOOP_TEST_SOMETHING" not in message


def test_environment_variables_are_documented() -> None:
    """Every variable the code reads is on the Resources page, in the same order."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "resources.md").read_text()
    found = re.findall(r"\| `(RESOURCELOOP_[A-Z_]+)`", page)
    assert tuple(found) == _config.ENVIRONMENT == ENV_VARS


# -- import, the reaper thread -----------------------------------------------------------------


IMPORT_CHECK = textwrap.dedent(
    """
    import asyncio, atexit, sys, threading

    close = asyncio.BaseEventLoop.close
    threads = threading.enumerate()
    callbacks = atexit._ncallbacks()

    import resourceloop

    TEMPLATE = resourceloop.ResourceTemplate(lambda: object(), name="module-level")
    assert threading.enumerate() == threads, threading.enumerate()
    assert asyncio.BaseEventLoop.close is close
    assert atexit._ncallbacks() == callbacks
    assert "aiohttp" not in sys.modules

    async def main():
        await TEMPLATE.acquire()
        loop = asyncio.get_running_loop()
        reapers = [t for t in threading.enumerate() if t.name == "resourceloop-reaper"]
        assert len(reapers) == 1 and reapers[0].daemon, reapers
        assert "close" in vars(loop)  # the hook is on the instance ...
        assert asyncio.BaseEventLoop.close is close  # ... never on the class

    asyncio.run(main())
    assert resourceloop.stats().graceful_releases == 1
    print("clean")
    """
)


def test_import_starts_no_thread_and_patches_nothing() -> None:
    """Importing resourceloop and declaring a template starts nothing and reads no setting."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert result.stderr == ""


def test_import_succeeds_with_a_bad_environment() -> None:
    """A bad variable cannot break ``import resourceloop``: it is read on first use only."""
    code = "import resourceloop; resourceloop.ResourceTemplate(print); print('imported')"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(RESOURCELOOP_RELEASE_TIMEOUT="forever"),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_reaper_thread_starts_on_first_acquisition() -> None:
    """The reaper is one daemon thread named resourceloop-reaper, started on demand."""
    assert reaper_threads() == []
    assert not resourceloop.stats().reaper_alive
    template = ResourceTemplate(make)
    assert reaper_threads() == []

    async def main() -> None:
        await template.acquire()
        (reaper,) = reaper_threads()
        assert reaper.daemon
        assert reaper.is_alive()
        assert resourceloop.stats().reaper_alive

    run(main)
    run(main)  # a second loop reuses the same thread
    assert len(reaper_threads()) == 1


# -- stats() -----------------------------------------------------------------------------------


def test_stats_is_a_frozen_snapshot_with_the_documented_fields() -> None:
    """stats() returns a frozen attrs instance that does not change afterwards."""
    documented = {
        "loops_tracked",
        "loops_managed",
        "resources_live",
        "acquisitions",
        "graceful_releases",
        "forced_releases",
        "release_failures",
        "release_timeouts",
        "reaper_passes",
        "multithreaded",
        "reaper_alive",
    }
    first = resourceloop.stats()
    assert isinstance(first, resourceloop.Stats)
    assert attrs.has(type(first))
    assert documented <= set(attrs.fields_dict(type(first)))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.acquisitions = 1  # type: ignore[misc]
    assert first.acquisitions == 0
    assert first.resources_live == {}
    assert not first.multithreaded

    template = ResourceTemplate(make, name="counted")
    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        for loop in loops:
            loop.run_until_complete(template.acquire())
        held = resourceloop.stats()
        assert held.resources_live == {"counted": 2}
        assert held.loops_tracked == 2
        assert held.acquisitions == 2
        assert first.acquisitions == 0  # the earlier snapshot did not move
        resourceloop.reap()  # the loops are idle, but their thread is alive: left alone
        assert resourceloop.stats().reaper_passes == held.reaper_passes + 1
        assert resourceloop.stats().resources_live == {"counted": 2}
    finally:
        for loop in loops:
            loop.close()
    after = resourceloop.stats()
    assert after.resources_live == {}
    assert after.loops_tracked == 0
    assert after.graceful_releases == 2


# -- the ungraceful-loop warning ---------------------------------------------------------------


def test_ungraceful_loop_warning_once_per_loop_when_close_hook_is_disabled(
    record_warnings: list[warnings.WarningMessage], hook_disabled: None
) -> None:
    """With the close hook off, each loop warns once, naming the template, loop and remedy."""
    first = ResourceTemplate(make, name="first-client")
    second = ResourceTemplate(make, name="second-client")

    async def main() -> None:
        await first.acquire()
        await second.acquire()
        await first.acquire()

    run(main)
    run(main)
    ungraceful = [w for w in record_warnings if w.category is UngracefulLoopWarning]
    assert len(ungraceful) == 2
    assert len(record_warnings) == 2
    for caught in ungraceful:
        message = str(caught.message)
        assert "'first-client'" in message
        assert "_UnixSelectorEventLoop" in message or "EventLoop" in message
        assert "RESOURCELOOP_CLOSE_HOOK=0" in message
        assert "resource_manager()" in message
        assert issubclass(caught.category, ResourceLoopWarning)
        assert issubclass(caught.category, ResourceWarning)
    resourceloop.reap()
    forced = [w for w in record_warnings if w.category is ForcedReleaseWarning]
    assert len(forced) == 4
    assert resourceloop.stats().loops_tracked == 0


def test_disabling_the_close_hook_later_warns_at_the_next_new_resource(
    record_warnings: list[warnings.WarningMessage],
) -> None:
    """A loop hooked before configure(close_hook=False) warns at its next new resource."""
    first = ResourceTemplate(make, name="before")
    second = ResourceTemplate(make, name="after")

    async def main() -> None:
        await first.acquire()
        assert record_warnings == []
        resourceloop.configure(close_hook=False)
        await first.acquire()  # cached: no new resource, no warning
        assert record_warnings == []
        await second.acquire()

    run(main)
    resourceloop.reap()  # the reaper thread, woken by configure(), may have done it already
    assert [w.category for w in record_warnings] == [UngracefulLoopWarning] + [
        ForcedReleaseWarning
    ] * 2
    assert "'after'" in str(record_warnings[0].message)


def test_new_loop_per_request_emits_no_warning(
    record_warnings: list[warnings.WarningMessage], caplog: pytest.LogCaptureFixture
) -> None:
    """A Flask-like app running each request on a new loop (50 asyncio.run) never warns."""
    released: list[object] = []
    session = ResourceTemplate(make, released.append, name="session")

    async def arelease(resource: object) -> None:
        await asyncio.sleep(0)
        released.append(resource)

    pool = ResourceTemplate(make, arelease, name="pool")

    async def handle_request() -> None:
        await session.acquire()
        await pool.acquire()

    with caplog.at_level(logging.WARNING, logger="resourceloop"):
        for _ in range(50):
            asyncio.run(handle_request())
    assert record_warnings == []
    assert [r for r in caplog.records if r.name == "resourceloop"] == []
    assert len(released) == 100
    stats = resourceloop.stats()
    assert stats.graceful_releases == 100
    assert stats.forced_releases == 0
    assert stats.loops_tracked == 0
    assert stats.resources_live == {}


def test_ungraceful_loop_warning_points_at_the_acquiring_code(
    record_warnings: list[warnings.WarningMessage], hook_disabled: None
) -> None:
    """The warning names the user's line, not resourceloop's, so filters by module work."""
    template = ResourceTemplate(make, name="blamed")

    async def main() -> None:
        await template.acquire()

    run(main)
    (caught,) = [w for w in record_warnings if w.category is UngracefulLoopWarning]
    assert caught.filename == __file__
    resourceloop.reap()


def test_error_filter_fails_the_acquisition_not_the_cleanup(
    hook_disabled: None, caplog: pytest.LogCaptureFixture
) -> None:
    """``-W error``: the user's acquisition raises; the reaper's forced release only logs.

    Raising from the reaper or the close hook would break the cleanup itself, so there the
    warning goes to the ``resourceloop`` logger instead.
    """
    created: list[object] = []

    def create() -> object:
        created.append(object())
        return created[-1]

    template = ResourceTemplate(create, lambda r: None, name="strict")

    async def main() -> None:
        with pytest.raises(UngracefulLoopWarning):
            await template.acquire()
        with pytest.raises(UngracefulLoopWarning):  # every unmanaged attempt, not only the first
            await template.acquire()
        assert created == []  # nothing was created, nothing is held
        async with resourceloop.resource_manager():  # a managed loop has nothing at risk
            await template.acquire()
        assert len(created) == 1

    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceLoopWarning)
        loop.run_until_complete(main())
        loop.close()
        with caplog.at_level(logging.WARNING, logger="resourceloop"):
            resourceloop.reap()  # nothing left to force: the manager released it
    assert resourceloop.stats().graceful_releases == 1
    assert resourceloop.stats().loops_tracked == 0

    # A resource the reaper must force: the error filter is logged, never raised.
    loop = asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UngracefulLoopWarning)
        loop.run_until_complete(template.acquire())
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceLoopWarning)
        with caplog.at_level(logging.WARNING, logger="resourceloop"):
            resourceloop.reap()
    assert resourceloop.stats().forced_releases == 1
    assert any("ForcedReleaseWarning" in r.getMessage() for r in caplog.records)


def test_a_misspelt_setting_is_a_typeerror_naming_the_closest_one() -> None:
    """``configure(relase_timeout=3)`` says what was meant, lists the settings, changes nothing."""
    before = resourceloop.configure()
    with pytest.raises(TypeError, match=r"'relase_timeout'.*did you mean 'release_timeout'"):
        resourceloop.configure(relase_timeout=3, reap_interval=9.0)
    assert resourceloop.configure() == before
