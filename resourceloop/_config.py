"""Runtime settings: their defaults, the environment variables behind them, validation.

The settings are read lazily, on the first acquisition or the first ``configure()`` call, so
that importing resourceloop never fails because of the environment. A bad value is a
``ValueError`` that names the setting (or the variable) and says what would be accepted.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping

import attrs

__all__ = ["Config", "current", "replace"]

_ENV_REAP_INTERVAL = "RESOURCELOOP_REAP_INTERVAL"
_ENV_RELEASE_TIMEOUT = "RESOURCELOOP_RELEASE_TIMEOUT"
_ENV_CLOSE_HOOK = "RESOURCELOOP_CLOSE_HOOK"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


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


def _positive_seconds(setting: str, value: object, *, text: bool = False) -> float:
    accepted = (int, float, str) if text else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ValueError(f"{setting} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{setting} must be a number of seconds, got {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{setting} must be a finite number of seconds above 0, got {value!r}")
    return seconds


def _flag(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{setting} must be true or false (or 1/0), got {value!r}")


def _from_environment(environ: Mapping[str, str]) -> Config:
    config = Config()
    if _ENV_REAP_INTERVAL in environ:
        interval = _positive_seconds(_ENV_REAP_INTERVAL, environ[_ENV_REAP_INTERVAL], text=True)
        config = attrs.evolve(config, reap_interval=interval)
    if _ENV_RELEASE_TIMEOUT in environ:
        timeout = _positive_seconds(_ENV_RELEASE_TIMEOUT, environ[_ENV_RELEASE_TIMEOUT], text=True)
        config = attrs.evolve(config, release_timeout=timeout)
    if _ENV_CLOSE_HOOK in environ:
        config = attrs.evolve(config, close_hook=_flag(_ENV_CLOSE_HOOK, environ[_ENV_CLOSE_HOOK]))
    return config


_lock = threading.Lock()  # guards _current; held only to read or swap a reference
_current: Config | None = None


def current() -> Config:
    """The settings in force, read from the environment on first use."""
    config = _current
    if config is None:
        config = _load()
    return config


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
            raise ValueError(f"close_hook must be True or False, got {close_hook!r}")
        changes["close_hook"] = close_hook
    base = current()
    global _current
    with _lock:
        _current = attrs.evolve(_current or base, **changes)  # type: ignore[arg-type]
        return _current


def reset_lock_after_fork() -> None:
    """A fork child gets a fresh lock; the settings themselves carry over."""
    global _lock
    _lock = threading.Lock()


def reset_for_tests() -> None:
    """Forget the settings so the next use reads the environment again."""
    global _current
    with _lock:
        _current = None
