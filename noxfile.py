"""Developer sessions: ``nox -s tests`` (3.10 to 3.13), ``lint``, ``typecheck``, ``demo``, ``docs``,
``bench``.

``nox`` with no arguments runs lint, typecheck and tests. CI (``.ci/run``) runs the same.
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
    """Build the documentation site strictly, then check that it renders with no network.

    ``docs/_vendor.py`` fetches the Mermaid script the site serves itself (npm registry);
    ``docs/_check_offline.py`` opens the built pages in headless Chromium (Debian's
    ``chromium``) with every other host unresolvable, checks that the Lifecycle diagram is
    drawn and that no page requests anything from another host, and writes a screenshot to
    ``build/docs-check/lifecycle.png``.
    """
    session.install("-e", ".[docs]")
    session.run("python", "docs/_vendor.py")
    session.run("mkdocs", "build", "--strict", *session.posargs)
    session.run("python", "docs/_check_offline.py")


@nox.session(python=PYTHONS)
def bench(session: nox.Session) -> None:
    """Benchmarks against Pyot 6.0.9 and the floor: ``nox -s bench-3.11 [-- --quick]``."""
    session.install("-e", ".[test]", "pyot==6.0.9", "matplotlib>=3.7")
    session.run("python", "-m", "benchmarks", *session.posargs)
