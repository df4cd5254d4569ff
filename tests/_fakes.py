"""Fakes shared by the test modules: resources and recorders, instead of a copy per module.

Fakes over mocks (STYLE.md, section 4): a fake resource remembers the loop and thread it was
made on, and a recorder logs every call of the functions a template is given, with the loop
(if any) and the thread it ran on, so a test asserts where and how often a release ran.

Modules that still define their own ``Res`` or ``Recorder`` (tests/README.md lists them) move
here one at a time; each class here keeps the behaviour its first users rely on.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import attrs

__all__ = ["Fake", "Recorder", "Released", "Res", "running_loop_or_none"]


class Res:
    """A fake resource that remembers its loop: weakly always, strongly with ``hold_loop``.

    ``Res()`` inside a coroutine remembers the running loop weakly, so a dropped loop can be
    collected; ``hold_loop=True`` also keeps it in ``loop``, as an ``aiohttp.ClientSession``
    holds its loop (the case that makes a per-loop table leak).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, *, hold_loop: bool = False
    ) -> None:
        if loop is None:
            loop = running_loop_or_none()
        self.loop_ref = weakref.ref(loop) if loop is not None else None
        self.loop = loop if hold_loop else None

    def made_on(self) -> asyncio.AbstractEventLoop | None:
        """The loop it was made on, if that loop is still alive."""
        return self.loop_ref() if self.loop_ref is not None else None


def running_loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@attrs.define(eq=False)
class Fake:
    """A resource that remembers where it was created."""

    serial: int
    loop: asyncio.AbstractEventLoop | None
    thread: threading.Thread


@attrs.define(eq=False)
class Released:
    """One call of a release function: what, on which loop (if any), in which thread."""

    resource: Fake
    loop: asyncio.AbstractEventLoop | None
    thread: threading.Thread


@attrs.define(eq=False)
class Recorder:
    """Factory and release functions that record every call."""

    created: list[Fake] = attrs.field(factory=list)
    released: list[Released] = attrs.field(factory=list)
    forced: list[Released] = attrs.field(factory=list)

    def make(self) -> Fake:
        fake = Fake(len(self.created), running_loop_or_none(), threading.current_thread())
        self.created.append(fake)
        return fake

    async def amake(self) -> Fake:
        await asyncio.sleep(0)
        return self.make()

    def release(self, fake: Fake) -> None:
        self.released.append(Released(fake, running_loop_or_none(), threading.current_thread()))

    async def arelease(self, fake: Fake) -> None:
        await asyncio.sleep(0)
        self.release(fake)

    def force(self, fake: Fake) -> None:
        self.forced.append(Released(fake, running_loop_or_none(), threading.current_thread()))
