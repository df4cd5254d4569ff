"""The environment of the suite's child processes: explicit, so the parent's settings stay out.

A child Python inherits the environment, and with it whatever the suite runs under:
``PYTHONWARNINGS=default`` or ``PYTHONDEVMODE=1`` (which CI and developers use to run the suite
itself) would change what the child prints and how it treats warnings, and a
``RESOURCELOOP_*`` setting would change its runtime. Every test that starts a process builds its
environment here: what a shell needs to find programs and a locale, and nothing else unless the
test names it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["CHECKOUT", "child_env", "scrub_environ"]

#: The repository root: ``tests`` and the examples are importable from here.
CHECKOUT = Path(__file__).resolve().parent.parent

#: Passed through from the parent: finding programs, a home, a locale, a temporary directory.
_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT")

#: Settings of the parent run that must not reach a child started by a library we cannot give
#: an environment to (pytester's ``runpytest_subprocess`` copies ``os.environ``).
_RUN_SETTINGS = ("PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONASYNCIODEBUG", "PYTHONTRACEMALLOC")


def child_env(*, checkout_on_path: bool = False, **extra: str) -> dict[str, str]:
    """An environment for a child process: the few variables above, plus ``extra``.

    Args:
        checkout_on_path: Put the repository root on ``PYTHONPATH``, for a child that imports
            ``tests`` or runs from outside the checkout.
        extra: Variables the test sets on purpose (``RESOURCELOOP_CLOSE_HOOK="0"``, say).

    Returns:
        A new dict; ``PYTHONWARNINGS``, ``PYTHONDEVMODE``, ``PYTHONASYNCIODEBUG``,
        ``PYTEST_ADDOPTS`` and every ``RESOURCELOOP_*`` variable are never in it unless passed in
        ``extra``.
    """
    env = {name: os.environ[name] for name in _PASSED if name in os.environ}
    if checkout_on_path:
        env["PYTHONPATH"] = str(CHECKOUT)
    env.update(extra)
    return env


def scrub_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the parent run's Python and resourceloop settings from ``os.environ``, for one test.

    For children that a library starts with a copy of ``os.environ``; ``monkeypatch`` puts
    everything back when the test ends.
    """
    for name in list(os.environ):
        if name in _RUN_SETTINGS or name.startswith("RESOURCELOOP_"):
            monkeypatch.delenv(name)
