"""Fakes shared by the test modules: resources and recorders, instead of a copy per module.

Fakes over mocks (STYLE.md, section 4): a fake resource remembers the loop and thread it was
made on, and a recorder logs every call of the functions a template is given, with the loop
(if any) and the thread it ran on, so a test asserts where and how often a release ran.

A module that needs a variant passes parameters (``Res(hold_loop=...)``,
``Recorder.template(sync=..., fail_release=..., lazy=...)``) rather than defining a copy.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import weakref
from typing import Any, Literal

import attrs

from resourceloop import ResourceTemplate

__all__ = ["Fake", "Recorder", "Released", "Res", "running_loop_or_none"]

_serials = itertools.count(1)


class Res:
    """A fake resource that remembers its loop: weakly always, strongly with ``hold_loop``.

    ``Res()`` inside a coroutine remembers the running loop weakly, so a dropped loop can be
    collected; ``hold_loop=True`` also keeps it in ``loop``, as an ``aiohttp.ClientSession``
    holds its loop (the case that makes a per-loop table leak). It also remembers the loop's
    ``id`` (which outlives the weak reference of a collected loop), the process it was made in
    (``pid``, for fork), its template's ``name``, a ``serial`` unique in the process, and
    ``ends``, where a test's release functions note how it ended.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        hold_loop: bool = False,
        name: str = "",
    ) -> None:
        if loop is None:
            loop = running_loop_or_none()
        self.name = name
        self.serial = next(_serials)
        self.pid = os.getpid()
        self.loop_ref = weakref.ref(loop) if loop is not None else None
        self.loop_id = id(loop) if loop is not None else None
        self.loop = loop if hold_loop else None
        self.ends: list[str] = []

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

    def made_on(self) -> asyncio.AbstractEventLoop | None:
        return self.loop


@attrs.define(eq=False)
class Released:
    """One call of a release function: what, on which loop (if any), in which thread.

    ``kind`` is "graceful" or "forced"; ``on_own_loop`` whether it ran on the loop its ``Res``
    or ``Fake`` was made on; ``loop_closed`` whether the loop it ran on was closed then (None
    off any loop); ``name`` the template's, for ``Recorder.template``, or the ``Res``'s, for
    ``Recorder.release`` and ``force``. The loop is held weakly (``loop`` is None once it is
    gone), so recording a release keeps no loop alive.
    """

    resource: Any
    loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None
    thread: threading.Thread
    kind: str
    name: str
    on_own_loop: bool
    loop_closed: bool | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop it ran on, if any and still alive."""
        return self.loop_ref() if self.loop_ref is not None else None

    @classmethod
    def here(cls, resource: Any, kind: str = "graceful", name: str = "") -> Released:
        """A call of a release function of ``kind``, running now on this loop and thread."""
        loop = running_loop_or_none()
        made_on = getattr(resource, "made_on", None)
        return cls(
            resource,
            weakref.ref(loop) if loop is not None else None,
            threading.current_thread(),
            kind,
            name,
            on_own_loop=loop is not None and made_on is not None and made_on() is loop,
            loop_closed=loop.is_closed() if loop is not None else None,
        )


@attrs.define(eq=False)
class Recorder:
    """Factory and release functions that record every call, and templates made of them.

    ``make``/``release``/``force`` (and their async forms) are functions to give a template;
    ``template()`` builds one whose resources are ``Res``. Every call is in ``calls`` in order,
    and by kind in ``released`` (graceful) and ``forced``; ``events`` logs "release NAME".
    ``make`` lists what it made in ``created``; ``names()`` lists the templates'
    acquisitions and graceful releases by template name.
    """

    created: list[Fake] = attrs.field(factory=list)
    #: The template names of the acquisitions by ``template()``'s templates, in order: names
    #: only, which keep no resource (nor its loop) alive.
    acquisitions: list[str] = attrs.field(factory=list)
    #: The resources acquired by templates made with ``keep=True``, in order. Opt-in: kept
    #: here, a resource outlives its store (tests of collection need the store's to be the
    #: only reference).
    acquired: list[Res] = attrs.field(factory=list)
    #: The templates of ``template()``. resourceloop lists templates weakly, so the recorder
    #: keeps them alive for the test: a test may make one (``rec.template("t")``) for a
    #: manager to acquire without holding it itself.
    templates: list[ResourceTemplate[Any]] = attrs.field(factory=list)
    released: list[Released] = attrs.field(factory=list)
    forced: list[Released] = attrs.field(factory=list)
    calls: list[Released] = attrs.field(factory=list)
    events: list[str] = attrs.field(factory=list)
    #: Set at every forced release: a test waiting for the reaper thread waits on it.
    forced_event: threading.Event = attrs.field(factory=threading.Event)

    def _record(self, resource: Any, kind: str, name: str = "") -> None:
        call = Released.here(resource, kind, name)
        self.calls.append(call)
        (self.forced if kind == "forced" else self.released).append(call)
        if kind == "forced":
            self.forced_event.set()

    def make(self) -> Fake:
        fake = Fake(len(self.created), running_loop_or_none(), threading.current_thread())
        self.created.append(fake)
        return fake

    async def amake(self) -> Fake:
        await asyncio.sleep(0)
        return self.make()

    # The release functions take a ``Res`` too, and record its name (a ``Fake`` has none),
    # so a test's own release function of a named ``Res`` shows up in ``names()``.
    def release(self, fake: Fake | Res) -> None:
        self._record(fake, "graceful", getattr(fake, "name", ""))

    async def arelease(self, fake: Fake | Res) -> None:
        await asyncio.sleep(0)
        self.release(fake)

    def force(self, fake: Fake | Res) -> None:
        self._record(fake, "forced", getattr(fake, "name", ""))

    def template(
        self,
        name: str,
        *,
        hold_loop: bool = True,
        sync: bool = False,
        yields: bool = False,
        fail: bool = False,
        fail_release: BaseException | None = None,
        force: bool = True,
        keep: bool = False,
        **kwargs: Any,
    ) -> ResourceTemplate[Res]:
        """A template of ``Res`` (holding its loop unless ``hold_loop=False``) that records.

        ``sync``: plain functions instead of coroutine functions; ``yields``: the (coroutine)
        acquisition and release each await once first, so their caller really suspends;
        ``fail``: the release raises ValueError after it records, ``fail_release``: it raises
        that exception; ``force=False``: no ``force_release_func``; ``keep``: each resource
        it acquires is kept in ``acquired``. Other keywords (``lazy``) go to the template,
        which the recorder keeps (``templates``).
        """

        def make() -> Res:
            r = Res(asyncio.get_running_loop(), hold_loop=hold_loop, name=name)
            self.acquisitions.append(name)
            if keep:
                self.acquired.append(r)
            return r

        async def acquire() -> Res:
            if yields:
                await asyncio.sleep(0)
            return make()

        def release_sync(r: Res) -> None:
            self._record(r, "graceful", name)
            self.events.append(f"release {name}")
            if fail_release is not None:
                raise fail_release
            if fail:
                raise ValueError(f"release of {name} failed")

        async def release(r: Res) -> None:
            if yields:
                await asyncio.sleep(0)
            release_sync(r)

        def force_release(r: Res) -> None:
            self._record(r, "forced", name)

        if force:
            kwargs["force_release_func"] = force_release
        template = ResourceTemplate(
            make if sync else acquire, release_sync if sync else release, name=name, **kwargs
        )
        self.templates.append(template)
        return template

    def names(self, which: Literal["released", "acquired"] = "released") -> list[str]:
        """Template names, in order: of the graceful releases, or of the acquisitions.

        One list of names shows the order across templates (newest released first, say).
        """
        if which == "acquired":
            return list(self.acquisitions)
        return [c.name for c in self.released]

    def released_of(self, resource: object) -> list[Released]:
        """The graceful releases of ``resource``: a test asserts it was released once, where."""
        return [c for c in self.released if c.resource is resource]

    def of(self, kind: str) -> list[Released]:
        """The calls of ``kind``: "graceful" or "forced"."""
        return [c for c in self.calls if c.kind == kind]

    @property
    def graceful(self) -> list[tuple[Any, bool, bool | None]]:
        """Each graceful release as (resource, on its own loop, loop closed then)."""
        return [(c.resource, c.on_own_loop, c.loop_closed) for c in self.released]

    @property
    def forced_resources(self) -> list[Any]:
        """What was released forcefully, in order."""
        return [c.resource for c in self.forced]

    def clear(self) -> None:
        """Forget every call recorded so far."""
        for calls in (self.released, self.forced, self.calls, self.events):
            calls.clear()
