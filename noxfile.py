"""Developer sessions: ``nox -s tests`` (3.10 to 3.13), ``lint``, ``typecheck``, ``demo``, ``docs``,
``bench``, ``mutants``, ``switchinterval``.

``nox`` with no arguments runs lint, typecheck and tests. CI (``.ci/run``) runs the same;
``mutants`` and ``switchinterval`` are not part of it.
"""

from __future__ import annotations

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on one Python."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over everything."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the tests, for the oldest and newest Python."""
    # exceptiongroup: the 3.10 branch of _compat imports the backport.
    session.install("-e", ".[test]", "mypy>=1.11", "exceptiongroup>=1.1")
    for version in (PYTHONS[0], PYTHONS[-1]):
        session.run("mypy", "--strict", "--python-version", version, "resourceloop", "tests")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Run ``python -m resourceloop demo`` (pass options after ``--``)."""
    session.install("-e", ".[aiohttp]")
    session.run("python", "-m", "resourceloop", "demo", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links and references fail)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=PYTHONS)
def bench(session: nox.Session) -> None:
    """Benchmarks against Pyot 6.0.9 and the floor: ``nox -s bench-3.11 [-- --quick]``."""
    session.install("-e", ".[test]", "pyot==6.0.9", "matplotlib>=3.7")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python="3.11")
def mutants(session: nox.Session) -> None:
    """Mutation testing of the custody core (not in CI): ``nox -s mutants -- --module _reaper``.

    Options after ``--`` go to ``tools/mutants.py`` (``--sample``, ``--module``, ``--only``,
    ``--jobs``, ``--list``); by default 60 sampled mutants of each of ``_registry``,
    ``_release``, ``_closehook`` and ``_reaper``.
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
