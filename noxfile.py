"""Developer sessions: ``nox -s tests`` (the newest Python here), ``nox -t pythons`` (3.10 to
3.15, as CI), ``lint``, ``typecheck``, ``demo``, ``docs``, ``docs_check``, ``bench``, ``mutants``,
``switchinterval``.

``nox`` with no arguments runs lint, typecheck and tests. CI (``.ci/run``) runs lint, typecheck,
every ``tests-3.X`` session and ``contrib_oldest``; ``mutants`` and ``switchinterval`` are not
part of it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import nox

#: Every Python the project supports and tests; ``requires-python`` and the classifiers agree.
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
#: Run in a Debian sid root (``.ci/newer-pythons.sh``) where the host has no such interpreter.
SID_PYTHONS = ["3.14", "3.15"]
#: The sid root's location, shared with ``.ci/newer-pythons.sh``.
SID_ROOT = Path(os.environ.get("RESOURCELOOP_SID_ROOT", "/var/tmp/resourceloop-sid"))
#: nox's own rule for "this is CI": a missing interpreter is then an error, never a skip.
CI = "CI" in os.environ
#: The newest supported Python installed on this machine: what ``nox -s tests`` runs on.
NEWEST = next((v for v in reversed(PYTHONS) if shutil.which(f"python{v}")), None)
#: pytest-xdist: one worker per core. The suite is independent test by test (each worker is a
#: process with its own runtime, reset by tests/conftest.py around every test); the tests that
#: share a private server stay on one worker (``xdist_group``, ``--dist loadgroup``).
PARALLEL = ["-n", "auto", "--dist", "loadgroup"]
if CI:  # the slowest tests of each session, in its log: where a session's time went
    PARALLEL.append("--durations=15")
#: Where ``nox -t pythons`` runs the tests marked ``engine`` (real Celery and Dramatiq workers,
#: about 45 s of a session, 90 s beside CI's other groups): their books are Celery's, redis' and
#: PostgreSQL's, the same on every Python, so the newest stands for the rest and CI keeps within
#: its time. (``contrib_oldest`` runs the SDK templates' Celery tasks on the oldest.)
ENGINE_PYTHONS = (PYTHONS[-1],)

nox.options.sessions = ["lint", "typecheck", "tests"]
#: uv where it is installed (CI installs it next to nox): it makes a session's environment in
#: about 10 s where pip takes about 30 s. Plain venv and pip otherwise, as a newcomer has.
nox.options.default_venv_backend = "uv|venv"
#: uv does not compile bytecode by default; CI runs with PYTHONDONTWRITEBYTECODE=1, so every
#: subprocess a test starts (Celery, gunicorn, Django...) would compile its imports again.
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
nox.options.error_on_missing_interpreters = CI
nox.options.download_python = "never"  # python.org and GitHub are out of reach in CI


class _NoUvNoise(logging.Filter):
    """nox logs "uv binary not found." in every session when uv is absent; the session then
    uses venv and pip, which is all a newcomer needs, so the line says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "uv binary not found."


logging.getLogger("nox").addFilter(_NoUvNoise())


def run_suite(session: nox.Session, *extra: str, pytest_args: Sequence[str] = ()) -> None:
    """Install ``.[test]`` and run pytest in parallel; options after ``--`` go to pytest.

    ``-- -n 0`` runs in one process; later options win over ``PARALLEL`` and ``pytest_args``
    (``-- -m ""`` runs the ``engine`` tests on any Python).
    """
    session.install("-e", ".[test]", *extra)
    session.run("python", "-m", "pytest", *PARALLEL, *pytest_args, *session.posargs)


# "python3.13", not "3.13": the signature of a session is its name and Python, and ``tests``
# with "3.13" would answer to ``-s tests-3.13`` too, running the suite twice.
@nox.session(python=f"python{NEWEST}" if NEWEST else None)
def tests(session: nox.Session) -> None:
    """Run the test suite on the newest Python installed here, in parallel (about 2 to 3 min).

    ``nox -t pythons`` runs it on every Python from 3.10 to 3.15 instead, as CI does.
    """
    run_suite(session)


def _how_to_get(version: str) -> str:
    how = (
        f"python{version} is not installed here. Install it (pyenv install {version}, "
        f"uv python install {version}, or your system's packages)"
    )
    if version in SID_PYTHONS:
        how += (
            f", or run the suite on Debian's python{version} in a Debian sid root: "
            f"`sudo bash .ci/newer-pythons.sh --python {version}` (it builds the root in "
            f"{SID_ROOT} once: about 1 GB, 1 to 5 minutes)"
        )
    return how + "; see README.md, Development"


def _unavailable(session: nox.Session, message: str) -> None:
    if CI:
        session.error(message)  # CI runs every Python, or fails
    session.skip(message)


def _describe_root() -> str:
    """Who built the sid root and when, so a run never uses a stranger's root unannounced."""
    ready = SID_ROOT / ".resourceloop-sid-ready"
    info = ready.stat()
    try:
        import pwd

        owner = pwd.getpwuid(info.st_uid).pw_name
    except (ImportError, KeyError):
        owner = str(info.st_uid)
    import datetime

    built = datetime.datetime.fromtimestamp(info.st_mtime, datetime.timezone.utc)
    return f"{SID_ROOT} (owned by {owner}, built {built:%Y-%m-%d %H:%M} UTC)"


def _tests_session(version: str) -> None:
    """Register ``tests-<version>``: on the host's interpreter, in the sid root, or a message."""
    on_host = shutil.which(f"python{version}") is not None

    engines = [] if version in ENGINE_PYTHONS else ["-m", "not engine"]

    def tests_here(session: nox.Session) -> None:
        run_suite(session, pytest_args=engines)

    def tests_elsewhere(session: nox.Session) -> None:
        if version not in SID_PYTHONS:
            _unavailable(session, _how_to_get(version))
        if sys.platform != "linux" or os.geteuid() != 0:
            _unavailable(session, f"{_how_to_get(version)}. The sid root needs root on Linux")
        ready = (SID_ROOT / ".resourceloop-sid-ready").exists()
        if not CI and not ready:
            session.skip(f"{_how_to_get(version)}. Outside CI, nox uses the root once it exists")
        if not CI and os.environ.get("RESOURCELOOP_SID_ROOT_OFF"):
            session.skip(f"{_how_to_get(version)}. RESOURCELOOP_SID_ROOT_OFF is set")
        if ready:
            session.log(
                f"python{version} is not installed here: using the Debian sid root in "
                f"{_describe_root()}; set RESOURCELOOP_SID_ROOT_OFF=1 to skip it, or "
                "RESOURCELOOP_SID_ROOT to use another"
            )
        script = ["bash", ".ci/newer-pythons.sh", "--python", version]
        session.run(*script, "--", *PARALLEL, *engines, *session.posargs, external=True)

    if on_host:
        tests_here.__doc__ = f"Run the test suite on Python {version}."
        nox.session(name=f"tests-{version}", python=version, tags=["pythons"])(tests_here)
    else:
        tests_elsewhere.__doc__ = f"Run the test suite on Python {version} (not installed here)."
        if version in SID_PYTHONS:
            tests_elsewhere.__doc__ = f"Run the test suite on Python {version}, in the sid root."
        nox.session(name=f"tests-{version}", python=False, tags=["pythons"])(tests_elsewhere)


for _version in PYTHONS:
    _tests_session(_version)


#: The oldest version of each contrib module's supported range (the newest is what ``tests``
#: installs): their forced releases touch the libraries' internals, so both ends are tested.
OLDEST_CONTRIB = [
    "aiohttp==3.12.15",
    "httpx==0.27.2",
    "redis==5.0.1",
    "asyncpg==0.29.0",
    "sqlalchemy[asyncio]==2.0.20",
    "openai==3.0.0",
    "anthropic==2.0.0",
]


@nox.session(python=PYTHONS[0])
def contrib_oldest(session: nox.Session) -> None:
    """The contrib tests against the oldest supported version of each client library."""
    session.install("-e", ".[test]")
    session.install(*OLDEST_CONTRIB)
    session.run(
        "python",
        "-m",
        "pytest",
        *PARALLEL,
        "tests/test_contrib_clients.py",
        "tests/test_contrib_aiohttp.py",
        "tests/test_contrib_ssl.py",
        "tests/test_contrib_llm.py",
        *session.posargs,
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over everything."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package for the oldest and newest Python, the tests for the newest.

    The tests run on every Python anyway; checking them twice cost CI about a minute.
    """
    # exceptiongroup: the 3.10 branch of _compat imports the backport.
    session.install("-e", ".[test]", "mypy>=1.11", "exceptiongroup>=1.1")
    session.run("mypy", "--strict", "--python-version", PYTHONS[0], "resourceloop")
    session.run("mypy", "--strict", "--python-version", PYTHONS[-1], "resourceloop", "tests")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Run ``python -m resourceloop demo`` (pass options after ``--``)."""
    session.install("-e", ".[aiohttp]")
    session.run("python", "-m", "resourceloop", "demo", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly into ``site/`` (needs npm for the Mermaid script).

    ``docs/_vendor.py`` fetches the Mermaid script the site serves itself from the npm registry
    with ``npm pack`` (Debian: ``apt-get install -y npm``); once fetched, it is reused. To read
    the result, serve it: ``python -m http.server -d site 8000`` and open
    http://127.0.0.1:8000/ (its links are directory URLs, which a browser does not resolve
    from ``file://``). ``nox -s docs_check`` then checks it in a browser.
    """
    session.install("-e", ".[docs]")
    session.run("python", "docs/_vendor.py")
    session.run("mkdocs", "build", "--strict", *session.posargs)
    session.log("built site/: python -m http.server -d site 8000, then http://127.0.0.1:8000/")


@nox.session(python="3.11")
def docs_check(session: nox.Session) -> None:
    """Check the built site in headless Chromium with no network (run ``docs`` first).

    ``docs/_check_offline.py`` opens the built pages in Debian's ``chromium``
    (``apt-get install -y chromium``) with every other host unresolvable, checks that the
    Lifecycle diagram is drawn and that no page requests anything from another host, and writes
    a screenshot to ``build/docs-check/lifecycle.png``; ``-- --screenshots`` captures every
    page in ``build/docs-check/pages/`` too.
    """
    if not Path("site", "index.html").exists():
        session.error("no site/ to check: run nox -s docs first")
    session.run("python", "docs/_check_offline.py", *session.posargs)


@nox.session(python=[v for v in PYTHONS if v not in SID_PYTHONS])
def bench(session: nox.Session) -> None:
    """Benchmarks against Pyot 6.0.9 and the floor: ``nox -s bench-3.11 [-- --quick]``.

    ``-- --instructions`` (or ``--cases i1,...``) also counts instructions with callgrind;
    valgrind is installed with apt-get when missing and this runs as root.
    """
    # anyio and cryptography: the portal case's peer and its self-signed certificate;
    # asyncio-atexit and asyncio-loop-local (and anyio's RunVar): issue #21's peers, case i5.
    session.install(
        "-e",
        ".[test]",
        "pyot==6.0.9",
        "matplotlib>=3.7",
        "anyio>=4",
        "cryptography>=42",
        "asyncio-atexit==1.0.1",
        "asyncio-loop-local==0.0.4",
    )
    counts = any(arg == "--instructions" or re.search(r"(^|,)i\d", arg) for arg in session.posargs)
    if counts and shutil.which("valgrind") is None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            session.error("instruction counts need valgrind: sudo apt-get install -y valgrind")
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "valgrind", external=True)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python="3.11")
def mutants(session: nox.Session) -> None:
    """Mutation testing of the custody core (not in CI): ``nox -s mutants -- --module _reaper``.

    Options after ``--`` go to ``tools/mutants.py`` (``--sample``, ``--module``, ``--only``,
    ``--jobs``, ``--list``); by default 60 sampled mutants of each module of the custody core
    (``_state``, ``_lifecycle``, ``_registry``, ``_release``, ``_force``, ``_loop_run``,
    ``_closehook``, ``_reaper``).
    """
    session.install("-e", ".[test]", "coverage>=7.4")
    session.run("python", "tools/mutants.py", *session.posargs)


#: The tests that race threads against each other.
CONCURRENCY_TESTS = [
    "tests/test_threads.py",
    "tests/test_custody.py",
    "tests/test_reaper.py",
    "tests/test_stateful.py",
]


@nox.session(python="3.11")
def switchinterval(session: nox.Session) -> None:
    """The concurrency tests with a thread switch at almost every bytecode (free-threading proxy).

    ``sys.setswitchinterval(1e-6)`` (set by ``tests/conftest.py`` from
    ``RESOURCELOOP_SWITCHINTERVAL``); pass another interval as ``-- 1e-5``.
    """
    session.install("-e", ".[test]")
    interval = session.posargs[0] if session.posargs else "1e-6"
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *CONCURRENCY_TESTS,
        env={"RESOURCELOOP_SWITCHINTERVAL": interval},
    )
