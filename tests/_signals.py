"""Real signals at random instants: ``SIGALRM`` raising ``KeyboardInterrupt``, as Ctrl-C does."""

from __future__ import annotations

import random
import signal
import types
from collections.abc import Callable
from typing import Any

__all__ = ["RandomInterrupts"]


class RandomInterrupts:
    """Run calls each cut short by a real ``SIGALRM`` at a random instant, as a context.

    The handler raises ``KeyboardInterrupt`` only while a call runs, and only in frames
    ``where`` accepts (all by default). The test owns ``SIGALRM`` meanwhile: pytest-timeout
    must watch it from a thread (``method="thread"``).
    """

    def __init__(
        self,
        seed: int,
        longest: float,
        where: Callable[[types.FrameType], bool] | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._longest = longest
        self._where = where
        self._armed = False
        self._previous: Any = None
        self.interrupted = 0

    def _alarm(self, signum: int, frame: types.FrameType | None) -> None:
        if self._armed and frame is not None and (self._where is None or self._where(frame)):
            raise KeyboardInterrupt

    def __enter__(self) -> RandomInterrupts:
        self._previous = signal.signal(signal.SIGALRM, self._alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)

    def run(self, call: Callable[[], object]) -> None:
        """Call ``call`` with a signal due within ``longest`` seconds; count it if it landed."""
        try:
            try:
                self._armed = True
                signal.setitimer(signal.ITIMER_REAL, self._rng.uniform(1e-6, self._longest))
                call()
            finally:
                self._armed = False  # from here on the handler does nothing
        except KeyboardInterrupt:
            self.interrupted += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
