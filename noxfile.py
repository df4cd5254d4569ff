"""Developer sessions: ``nox -s tests`` (3.10 to 3.13), ``lint``, ``typecheck``, ``demo``.

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
    """mypy --strict on the package and the tests."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy", "--strict", "resourceloop", "tests")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Run ``python -m resourceloop demo`` (pass options after ``--``)."""
    session.install("-e", ".[aiohttp]")
    session.run("python", "-m", "resourceloop", "demo", *session.posargs)
