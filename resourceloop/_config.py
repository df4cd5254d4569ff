"""Runtime settings: their defaults, the environment variables behind them, validation.

The settings are read lazily, on the first acquisition or the first ``configure()`` call, so
that importing resourceloop never fails because of the environment. Every error names the
setting (or the variable) and says what would be accepted:

* ``configure()`` given the wrong type (a string, a bool for a number, a number for a flag) is
  a ``TypeError``; the right type out of range (zero, negative, not finite, past
  ``threading.TIMEOUT_MAX``) is a ``ValueError``.
* An environment variable is text, so any bad one is a ``ConfigurationError`` (a
  ``ValueError``), raised where it is first read (``first_use_error``).
* A ``RESOURCELOOP_*`` variable that is not one of ours (a typo such as
  ``RESOURCELOOP_RELASE_TIMEOUT``) is a ``RuntimeWarning`` naming it, the closest known name
  and all of them: it would otherwise be ignored in silence. ``RESOURCELOOP_TEST_*`` belongs to
  resourceloop's own test suite and is left alone.
"""

from __future__ import annotations

import difflib
import math
import os
import threading
import warnings
from collections.abc import Mapping

import attrs

from ._errors import ConfigurationError
from ._locks import new_lock

__all__ = ["ENVIRONMENT", "FALSE_SPELLINGS", "TRUE_SPELLINGS", "Config", "current", "replace"]

_ENV_REAP_INTERVAL = "RESOURCELOOP_REAP_INTERVAL"
_ENV_RELEASE_TIMEOUT = "RESOURCELOOP_RELEASE_TIMEOUT"
_ENV_CLOSE_HOOK = "RESOURCELOOP_CLOSE_HOOK"
#: Every variable resourceloop reads, in the order the documentation lists them.
ENVIRONMENT = (_ENV_REAP_INTERVAL, _ENV_RELEASE_TIMEOUT, _ENV_CLOSE_HOOK)
_PREFIX = "RESOURCELOOP_"
_TEST_PREFIX = "RESOURCELOOP_TEST_"  # read by tests/, never by the library

#: The spellings ``RESOURCELOOP_CLOSE_HOOK`` accepts, in any letter case (docs/resources.md).
TRUE_SPELLINGS = ("1", "true", "yes", "on")
FALSE_SPELLINGS = ("0", "false", "no", "off")


@attrs.frozen
class Config:
    """The runtime settings in force; returned by :func:`resourceloop.configure`.

    Attributes:
        reap_interval: Seconds between two reaper passes while loops are tracked.
        release_timeout: Seconds one release function may run before it is abandoned and the
            resource is released forcefully.
        close_hook: Whether loops get a close hook that releases their resources gracefully,
            on the loop, just before it closes.

    .. versionadded:: 0.1.0
    """

    reap_interval: float = 1.0
    release_timeout: float = 10.0
    close_hook: bool = True


def _seconds_in_range(setting: str, seconds: float, given: object) -> float:
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{setting} must be a finite number of seconds above 0, got {given!r}")
    if seconds > threading.TIMEOUT_MAX:
        # Event.wait() and Lock.acquire() raise OverflowError past it, deep in the reaper.
        raise ValueError(
            f"{setting} must be at most threading.TIMEOUT_MAX ({threading.TIMEOUT_MAX:g} "
            f"seconds on this platform), got {given!r}"
        )
    return seconds


def _positive_seconds(setting: str, value: object) -> float:
    """A ``configure()`` argument: an int or float (not a bool) in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{setting} must be a number of seconds (int or float), got {type(value).__name__} "
            f"{value!r}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    return _seconds_in_range(setting, seconds, value)


def _seconds_from_text(variable: str, text: str) -> float:
    """An environment variable's value: a decimal number of seconds in range."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(
            f"{variable} must be a number of seconds, such as 2.5, got {text!r}"
        ) from None
    return _seconds_in_range(variable, seconds, text)


def _flag_from_text(variable: str, text: str) -> bool:
    spelling = text.lower()
    if spelling in TRUE_SPELLINGS:
        return True
    if spelling in FALSE_SPELLINGS:
        return False
    raise ValueError(
        f"{variable} must be one of {', '.join(TRUE_SPELLINGS)} (on) or "
        f"{', '.join(FALSE_SPELLINGS)} (off), in any letter case, got {text!r}"
    )


def _warn_unknown(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith(_PREFIX) or name in ENVIRONMENT or name.startswith(_TEST_PREFIX):
            continue
        # Compare what follows the prefix: every name shares it, so all would look close.
        known = [known_name[len(_PREFIX) :] for known_name in ENVIRONMENT]
        close = difflib.get_close_matches(name[len(_PREFIX) :], known, n=1)
        hint = f"did you mean {_PREFIX}{close[0]}? " if close else ""
        warnings.warn(
            f"unknown environment variable {name} is ignored; {hint}resourceloop reads "
            f"{', '.join(ENVIRONMENT)}",
            RuntimeWarning,
            stacklevel=2,
        )


def _from_environment(environ: Mapping[str, str]) -> Config:
    config = Config()
    if _ENV_REAP_INTERVAL in environ:
        interval = _seconds_from_text(_ENV_REAP_INTERVAL, environ[_ENV_REAP_INTERVAL])
        config = attrs.evolve(config, reap_interval=interval)
    if _ENV_RELEASE_TIMEOUT in environ:
        timeout = _seconds_from_text(_ENV_RELEASE_TIMEOUT, environ[_ENV_RELEASE_TIMEOUT])
        config = attrs.evolve(config, release_timeout=timeout)
    if _ENV_CLOSE_HOOK in environ:
        hook = _flag_from_text(_ENV_CLOSE_HOOK, environ[_ENV_CLOSE_HOOK])
        config = attrs.evolve(config, close_hook=hook)
    _warn_unknown(environ)  # after validation: a bad value raises, and then nothing warns twice
    return config


_lock = new_lock()  # guards _current; held only to read or swap a reference
_current: Config | None = None


def current() -> Config:
    """The settings in force, read from the environment on first use.

    Raises:
        ConfigurationError: A ``RESOURCELOOP_*`` variable is invalid.
    """
    config = _current
    if config is not None:
        return config
    error = first_use_error()
    if error is not None:
        raise error from None
    assert _current is not None
    return _current


def first_use_error() -> ConfigurationError | None:
    """Read the environment if it has not been; the error a bad variable makes, not raised.

    For the public entry points (``acquire()``, ``ResourceManager``, ``configure()``): each
    raises it itself, ``from None``, so the traceback ends at the user's call of that entry
    point, with no frames of resourceloop's below it and no chained ``ValueError``. The message
    says it all: the variable, its value, what is accepted.
    """
    if _current is not None:
        return None
    try:
        _load()
    except ValueError as exc:
        return ConfigurationError(str(exc))
    return None


def _load() -> Config:
    global _current
    config = _from_environment(os.environ)  # may raise ValueError: nothing is stored then
    with _lock:
        if _current is None:
            _current = config
        return _current


def replace(
    *,
    reap_interval: float | None = None,
    release_timeout: float | None = None,
    close_hook: bool | None = None,
) -> Config:
    """Validate every given setting, then swap them in all at once (none on error)."""
    changes: dict[str, object] = {}
    if reap_interval is not None:
        changes["reap_interval"] = _positive_seconds("reap_interval", reap_interval)
    if release_timeout is not None:
        changes["release_timeout"] = _positive_seconds("release_timeout", release_timeout)
    if close_hook is not None:
        if not isinstance(close_hook, bool):
            raise TypeError(
                f"close_hook must be True or False, got {type(close_hook).__name__} {close_hook!r}"
            )
        changes["close_hook"] = close_hook
    base = current()
    global _current
    with _lock:
        _current = attrs.evolve(_current or base, **changes)  # type: ignore[arg-type]
        return _current


def reset_lock_after_fork() -> None:
    """A fork child gets a fresh lock; the settings themselves carry over."""
    global _lock
    _lock = new_lock()


def reset_for_tests() -> None:
    """Forget the settings so the next use reads the environment again."""
    global _current
    with _lock:
        _current = None
