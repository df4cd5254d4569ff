"""Tests for `resourceloop.pytest_plugin` (and `resourceloop.live_resources`, which it uses).

Each test writes a small test module, runs pytest on it with ``-p resourceloop`` (so it works
whether or not plugin autoloading is disabled) and checks the outcome and the failure message.
The runs are in this process, except the pytest-asyncio one, which needs a fresh process (a
``ResourceManager`` acquires every template alive in the process).
Tests that leak on purpose park their loop in ``LEAKED``; the inner ``conftest.py`` closes those
loops when the inner session finishes, after every check has run.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest

import resourceloop
import resourceloop.warnings
from tests._env import scrub_environ

pytest_plugins = ["pytester"]

CONFTEST = """
import asyncio

import resourceloop

LEAKED: list[asyncio.AbstractEventLoop] = []


def pytest_sessionfinish(session, exitstatus):
    while LEAKED:
        LEAKED.pop().close()
    resourceloop.configure(close_hook=True, release_timeout=10.0)


def pytest_terminal_summary(terminalreporter):
    s = resourceloop.stats()
    terminalreporter.write_line(
        f"resourceloop-stats graceful={s.graceful_releases} forced={s.forced_releases} "
        f"failures={s.release_failures} live={len(resourceloop.live_resources())}"
    )
"""

INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""

LEAKY = """
import asyncio

import resourceloop
from conftest import LEAKED

leaky = resourceloop.ResourceTemplate(lambda: object(), name="leaky")


def test_leak():
    loop = asyncio.new_event_loop()
    LEAKED.append(loop)
    loop.run_until_complete(leaky.acquire(loop))


def test_after_the_leak():
    async def main():
        await leaky.acquire()

    asyncio.run(main())
"""

ORIGIN = re.compile(r"\w*EventLoop 0x[0-9a-f]+ \(thread 'MainThread'\)")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # -p marks resourceloop for assertion rewriting, but this process imported it already.
    return pytester.runpytest_inprocess(
        "-p",
        "resourceloop",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",  # its terminal summary alone costs most of an in-process run
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *args,
    )


def _with_asyncio() -> list[str]:
    """Load pytest-asyncio explicitly only when plugin autoloading is off."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        # -p marks the name for assertion rewriting, and the stdlib's asyncio is imported.
        return ["-p", "asyncio", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    return []


def test_inert_by_default(inner: pytest.Pytester) -> None:
    """Without the flag or the ini option the plugin registers no checker and fails nothing."""
    config = inner.parseconfigure("-p", "resourceloop")
    assert not config.pluginmanager.has_plugin("resourceloop-leak-checker")
    inner.makepyfile(test_leaky=LEAKY)
    result = _run(inner)
    result.assert_outcomes(passed=2)


def test_flag_registers_the_checker(inner: pytest.Pytester) -> None:
    """``--resourceloop-leaks`` registers the checker."""
    config = inner.parseconfigure("-p", "resourceloop", "--resourceloop-leaks")
    assert config.pluginmanager.has_plugin("resourceloop-leak-checker")


def test_clean_tests_pass(inner: pytest.Pytester) -> None:
    """Released by the close hook, by a manager, or never acquired: all pass."""
    inner.makepyfile(
        test_clean="""
        import asyncio

        import resourceloop

        closed = []
        res = resourceloop.ResourceTemplate(lambda: object(), closed.append, name="res")


        def test_close_hook():
            async def main():
                await res.acquire()

            asyncio.run(main())
            assert len(closed) == 1


        def test_manager_on_a_loop_closed_later():
            loop = asyncio.new_event_loop()
            try:
                async def main():
                    async with resourceloop.resource_manager():
                        await res.acquire()

                loop.run_until_complete(main())
                assert len(closed) == 2
            finally:
                loop.close()


        def test_nothing():
            pass
        """
    )
    result = _run(inner, "--resourceloop-leaks")
    result.assert_outcomes(passed=3)


def test_live_resource_on_unclosed_loop_fails(inner: pytest.Pytester) -> None:
    """A resource left on an open loop fails that test only, naming template and origin."""
    inner.makepyfile(test_leaky=LEAKY)
    result = _run(inner, "--resourceloop-leaks")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leak*",
            "*resourceloop: this test's resources were not released gracefully:",
            "*resource 'leaky' is still live on *EventLoop 0x* (thread 'MainThread'), "
            "a loop the test left unclosed (idle)*",
        ]
    )
    assert ORIGIN.search(result.stdout.str())
    assert "filtered out" not in result.stdout.str()
    assert "test_after_the_leak" not in "".join(
        line for line in result.stdout.lines if "ERROR at teardown" in line
    )


def test_ini_option_switches_it_on(inner: pytest.Pytester) -> None:
    """``resourceloop_leaks = true`` in the ini file works like the flag."""
    inner.makeini(INI + "resourceloop_leaks = true\n")
    inner.makepyfile(test_leaky=LEAKY)
    result = _run(inner)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*resource 'leaky' is still live on *"])


def test_failing_release_fails(inner: pytest.Pytester) -> None:
    """A release function that raises fails the test and the message says which and where."""
    inner.makepyfile(
        test_failing="""
        import asyncio

        import resourceloop


        def boom(resource):
            raise ValueError("boom")


        failing = resourceloop.ResourceTemplate(lambda: object(), boom, name="failing")


        def test_it():
            async def main():
                await failing.acquire()

            asyncio.run(main())
        """
    )
    result = _run(inner, "--resourceloop-leaks")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 release function(s) raised (resourceloop.stats().release_failures)*",
            "*release of 'failing' on *EventLoop 0x* (thread 'MainThread') failed: "
            "ValueError('boom')*",
        ]
    )


def test_release_timeout_fails(inner: pytest.Pytester) -> None:
    """A release that outlives ``release_timeout`` fails the test, naming the template."""
    inner.makepyfile(
        test_hanging="""
        import asyncio

        import resourceloop


        async def hang(resource):
            await asyncio.Event().wait()


        hanging = resourceloop.ResourceTemplate(lambda: object(), hang, name="hanging")


        def test_it():
            resourceloop.configure(release_timeout=0.05)

            async def main():
                await hanging.acquire()

            asyncio.run(main())
        """
    )
    result = _run(inner, "--resourceloop-leaks", "-W", "always::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 release(s) timed out (resourceloop.stats().release_timeouts)*",
            "*ReleaseTimeoutWarning: resource 'hanging' of *EventLoop 0x* (thread 'MainThread') "
            "was released forcefully*",
        ]
    )


FORCED = """
import asyncio

import resourceloop

forced = resourceloop.ResourceTemplate(lambda: object(), lambda r: None, name="forced")


def test_it():
    resourceloop.configure(close_hook=False)
    try:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(forced.acquire(loop))
        finally:
            loop.close()
    finally:
        resourceloop.configure(close_hook=True)
"""


@pytest.mark.parametrize(
    ("filters", "detail"),
    [
        # Shown as a warning: the checker names it from the warning it recorded.
        (
            ["-W", "always::ResourceWarning"],
            "*ForcedReleaseWarning: resource 'forced' of *EventLoop 0x* (thread 'MainThread') "
            # closed and reaped, or (3.12+, where nothing cycles back to it) collected first
            "was released forcefully because its loop was *",
        ),
        # Turned into an error: resourceloop logs it instead, and the checker names it from there.
        (
            [
                "-W",
                "ignore::resourceloop.warnings.UngracefulLoopWarning",
                "-W",
                "error::resourceloop.warnings.ForcedReleaseWarning",
            ],
            "*ForcedReleaseWarning: resource 'forced' of *EventLoop 0x* (thread 'MainThread')*",
        ),
        # Ignored: only the counter is left, and the message says how to see more.
        (
            ["-W", "ignore::ResourceWarning"],
            "*the warnings that name them were filtered out; run with "
            "-W always::resourceloop.warnings.ResourceLoopWarning*",
        ),
    ],
    ids=["shown", "error", "ignored"],
)
def test_forced_release_fails(inner: pytest.Pytester, filters: list[str], detail: str) -> None:
    """A loop closed without the close hook: the check's reaper pass forces, the test fails."""
    inner.makepyfile(test_forced=FORCED)
    result = _run(inner, "--resourceloop-leaks", *filters)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*1 resource(s) released forcefully (resourceloop.stats().forced_releases)*", detail]
    )


def test_pytest_asyncio_strict_loop_per_test_is_clean(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-asyncio closes its loop in fixture teardown; the check runs after that."""
    scrub_environ(monkeypatch)  # the inner run is a subprocess with a copy of os.environ
    inner.makepyfile(
        test_async="""
        import asyncio

        import pytest
        import pytest_asyncio

        import resourceloop

        released = []
        res = resourceloop.ResourceTemplate(lambda: object(), released.append, name="res")


        @pytest_asyncio.fixture
        async def acquired():
            return await res.acquire()


        @pytest.mark.asyncio
        async def test_acquires_on_its_loop(acquired):
            assert await res.acquire() is acquired
            assert released == []


        @pytest.mark.asyncio
        async def test_managed():
            async with resourceloop.resource_manager():
                await res.acquire()


        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop():
            await res.acquire()


        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_again():
            await res.acquire()


        def test_function_loops_released():
            # The module-scoped loop closes when this module's last test is torn down.
            assert len(released) == 2
        """
    )
    # A fresh process: a manager acquires every template alive in the process, and earlier
    # in-process runs may leave theirs behind. This also loads both plugins the way users do.
    result = inner.runpytest_subprocess(
        "-p", "resourceloop", "--resourceloop-leaks", "-W", "error", *_with_asyncio()
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["resourceloop-stats graceful=3 forced=0 failures=0 live=0"])


def test_abandoned_loop_is_released_gracefully_before_the_check(inner: pytest.Pytester) -> None:
    """A loop left unclosed by a thread that has ended is reaped gracefully, so no failure."""
    inner.makepyfile(
        test_abandoned="""
        import asyncio

        import pytest

        import resourceloop
        from conftest import LEAKED

        released = []
        res = resourceloop.ResourceTemplate(lambda: object(), released.append, name="abandoned")


        @pytest.mark.asyncio
        async def test_it():
            loop = asyncio.new_event_loop()
            LEAKED.append(loop)
            # Runs in the default executor's thread, which ends when pytest-asyncio's loop closes.
            await asyncio.to_thread(loop.run_until_complete, res.acquire(loop))
            assert released == []


        def test_released():
            assert len(released) == 1
        """
    )
    before = resourceloop.stats()
    result = _run(inner, *_with_asyncio(), "--resourceloop-leaks")
    result.assert_outcomes(passed=2)
    after = resourceloop.stats()
    assert after.graceful_releases - before.graceful_releases == 1
    assert after.forced_releases == before.forced_releases


def test_live_resources_lists_template_and_origin() -> None:
    """``resourceloop.live_resources()`` names template, origin and loop status."""
    res = resourceloop.ResourceTemplate(object, name="listed")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(res.acquire(loop))
        [live] = resourceloop.live_resources()
        assert live.template == "listed"
        assert ORIGIN.fullmatch(live.origin)
        assert live.loop_status == "idle"
        assert live.managed is False

        async def inside() -> list[resourceloop.LiveResource]:
            async with resourceloop.resource_manager():
                await res.acquire()
                return resourceloop.live_resources()

        [running] = loop.run_until_complete(inside())
        assert (running.loop_status, running.managed) == ("running", True)
    finally:
        loop.close()
    assert resourceloop.live_resources() == []


def test_live_resources_on_a_closed_loop_until_reaped() -> None:
    """A loop closed without the hook shows as ``closed`` until the reaper releases it."""
    res = resourceloop.ResourceTemplate(object, name="closed-one")
    resourceloop.configure(close_hook=False)
    loop = asyncio.new_event_loop()
    with pytest.warns(resourceloop.warnings.UngracefulLoopWarning):
        loop.run_until_complete(res.acquire(loop))
    loop.close()
    [live] = resourceloop.live_resources()
    assert (live.template, live.loop_status) == ("closed-one", "closed")
    with pytest.warns(resourceloop.warnings.ForcedReleaseWarning, match="'closed-one'"):
        resourceloop.reap()
    assert resourceloop.live_resources() == []


def test_help_documents_the_option(inner: pytest.Pytester) -> None:
    """``--help`` shows the flag and the ini option."""
    result = inner.runpytest_inprocess("-p", "resourceloop", "--help")
    result.stdout.fnmatch_lines(["*--resourceloop-leaks*", "*resourceloop_leaks (bool)*"])


def test_other_warnings_still_reach_pytest(inner: pytest.Pytester) -> None:
    """The checker records warnings to name leaks, but pytest's summary still shows them all."""
    inner.makepyfile(
        test_warns="""
        import warnings


        def test_it():
            warnings.warn("hello from the test", UserWarning)
        """
    )
    # In-process, the inner run starts from this suite's filters ("error"): say what we want.
    result = _run(inner, "--resourceloop-leaks", "-W", "always:hello from the test")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*UserWarning: hello from the test*"])


def test_a_session_scoped_async_fixture_is_judged_at_its_scope(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool made by a ``loop_scope="session"`` fixture is not "left unclosed" by a test.

    Its loop outlives every test on purpose; its resource is released gracefully, once, when
    the session's loop closes, and no test fails.
    """
    scrub_environ(monkeypatch)
    inner.makepyfile(
        test_session="""
        import pytest
        import pytest_asyncio

        import resourceloop

        released = []
        pool = resourceloop.ResourceTemplate(lambda: object(), released.append, name="pool")


        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def shared_pool():
            return await pool.acquire()


        @pytest.mark.asyncio(loop_scope="session")
        async def test_uses_it(shared_pool):
            assert await pool.acquire() is shared_pool


        @pytest.mark.asyncio
        async def test_function_loop_beside_it(shared_pool):
            assert shared_pool is not None


        def test_sync_test_beside_it(shared_pool):
            assert released == []
        """
    )
    result = inner.runpytest_subprocess(
        "-p", "resourceloop", "--resourceloop-leaks", "-W", "error", *_with_asyncio()
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["resourceloop-stats graceful=1 forced=0 failures=0 live=0"])


def test_a_release_func_that_returns_its_close_method_fails_the_test(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lambda s: s.close`` (parentheses missing) released nothing: the check says so."""
    scrub_environ(monkeypatch)
    inner.makepyfile(
        test_typo="""
        import asyncio

        import resourceloop


        class Session:
            closed = False

            async def close(self):
                self.closed = True


        sessions = []
        typo = resourceloop.ResourceTemplate(
            lambda: sessions.append(Session()) or sessions[-1],
            lambda s: s.close,
            name="typo",
            lazy=True,
        )


        def test_it():
            async def main():
                await typo.acquire()

            asyncio.run(main())
            assert not sessions[0].closed
        """
    )
    # A fresh process: its template must not reach the managers of this process's other tests.
    result = inner.runpytest_subprocess("-p", "resourceloop", "--resourceloop-leaks")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 release function(s) raised*",
            "*release_func of template 'typo' returned <bound method Session.close*a callable*",
        ]
    )
