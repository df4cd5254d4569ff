"""``ResourceManager``: say where a loop's resources live and die, with ``async with``."""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar, final, overload

from . import _config
from ._compat import ExceptionGroup, get_running_loop_or_none, iscoroutinefunction
from ._errors import LoopClosedError
from ._force import force_batch
from ._registry import registry
from ._release import release_batch
from ._runtime import track
from ._state import OPEN, LoopState
from ._template import ResourceTemplate

__all__ = ["ResourceManager", "owned_loops"]

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])

#: Loops whose resources an owner keeps for its own lifetime: the portal of ``resourceloop.sync``
#: adds its loop once its own manager is active there. A manager entered on such a loop acquires
#: like any other, but its exit releases nothing and it never conflicts with the owner's manager
#: or another call's. Weak, so an entry ends with its loop; written only by the owner.
owned_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


@final
class ResourceManager:
    """Acquire every template's resource for the running loop on entry; release them on exit.

    Use as ``async with ResourceManager():`` or decorate a coroutine function with
    :meth:`as_decorator`. Entering marks the loop in ``resource_managed_loops`` and acquires
    every registered template except the ``lazy`` ones; leaving releases everything the loop
    acquired meanwhile (lazy ones included), newest first, on the loop.

    Args:
        exist_ok: If another manager is already active on this loop, do nothing on entry and
            exit instead of raising.
        templates: The templates to acquire on entry, in this order, lazy or not, instead of
            every non-lazy template of the process: a task or view that uses only a database
            engine then opens no HTTP pool and no other database's pool. Templates the body
            acquires besides are released on exit too. Default: every non-lazy template.

    Raises:
        RuntimeError: On entry, when another manager is active on the loop and ``exist_ok`` is
            false, or when no loop is running.
        TypeError: ``templates`` is not an iterable of ``ResourceTemplate`` (a single template
            or a string included); raised at construction.
        ConfigurationError: On entry, when it is the first use of resourceloop and a
            ``RESOURCELOOP_*`` environment variable is invalid.

    A failing release never stops the others: all are attempted, then the failures are raised
    together as an ``ExceptionGroup``, unless the body raised, in which case they are logged and
    the body's exception propagates. Each release is bounded by ``release_timeout``. If the
    task leaving the manager is cancelled, or a ``KeyboardInterrupt`` or ``SystemExit`` arrives
    meanwhile, the release in progress ends there and the rest are released forcefully at
    once, so that the interruption is prompt; then it propagates.

    An instance belongs to the loop it is entered on and may be entered again after it exits.
    "Every registered template" means every live template in the process, including those
    other modules declared: libraries should mark optional templates ``lazy=True``.

    Construct it anywhere: the loop is looked up on entry, not at construction. Enter and leave
    it from coroutines running on the loop it manages.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_active", "_exist_ok", "_loop", "_state", "_templates")

    def __init__(
        self,
        exist_ok: bool = False,
        *,
        templates: Iterable[ResourceTemplate[Any]] | None = None,
    ) -> None:
        self._templates = _check_templates(templates, "ResourceManager(templates=...)")
        self._exist_ok = bool(exist_ok)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: LoopState | None = None
        self._active = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this manager was entered on.

        Raises:
            RuntimeError: The manager has never been entered.
        """
        if self._loop is None:
            raise RuntimeError("this ResourceManager has not been entered yet, so it has no loop")
        return self._loop

    @property
    def exist_ok(self) -> bool:
        """Whether entering on a loop that already has an active manager is a no-op."""
        return self._exist_ok

    @property
    def templates(self) -> tuple[ResourceTemplate[Any], ...] | None:
        """The templates acquired on entry, or ``None`` for every non-lazy template.

        Read-only; safe from any thread.

        .. versionadded:: 0.1.0
        """
        return self._templates

    def __repr__(self) -> str:
        where = "" if self._loop is None else f" loop={self._loop!r}"
        which = "" if self._templates is None else f" templates={[t.name for t in self._templates]}"
        return f"<ResourceManager active={self._active} exist_ok={self._exist_ok}{which}{where}>"

    def _eager(self) -> Iterable[ResourceTemplate[Any]]:
        """The templates to acquire on entry."""
        if self._templates is not None:
            return self._templates
        return [template for template in registry.templates() if not template._lazy]

    async def __aenter__(self) -> ResourceManager:
        loop = asyncio.get_running_loop()
        if _config._current is None:  # the first use: a bad variable's traceback ends here
            error = _config.first_use_error()
            if error is not None:
                raise error from None
        if self._active:
            raise RuntimeError("this ResourceManager is already active; create another one")
        # ``WeakSet.data``, its set of references: asking it is free, ``len()`` a Python call.
        if owned_loops.data and loop in owned_loops:  # type: ignore[attr-defined]
            # A portal's loop: its owner's manager holds the resources until the portal closes.
            self._loop = loop
            self._state = None  # so __aexit__ releases nothing
            for template in self._eager():
                await template.acquire()
            return self
        state = track(loop)  # a running loop is never closed
        if state.phase is not OPEN:
            raise LoopClosedError("cannot manage resources of a closing event loop")
        self._loop = loop
        if not registry.set_managed(state, True):
            if self._exist_ok:
                self._state = None
                return self
            raise RuntimeError(
                "another ResourceManager is already active on this event loop; nest it with "
                "ResourceManager(exist_ok=True) or leave the outer one first"
            )
        self._state = state
        self._active = True
        try:
            for template in self._eager():
                await template._acquire_here(loop, state)  # acquire() on this loop
        except BaseException:
            await self._release_all(loop, state, body_failed=True)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return  # exist_ok on an already-managed loop: the outer manager owns the work
        await self._release_all(self._loop, state, body_failed=exc is not None)  # type: ignore[arg-type]

    async def _release_all(
        self, loop: asyncio.AbstractEventLoop, state: LoopState, *, body_failed: bool
    ) -> None:
        self._state = None
        self._active = False
        batch = registry.take_all(state)
        try:
            if get_running_loop_or_none() is not loop:
                # The coroutine is being closed (GeneratorExit, by the collector or a loop
                # that is gone): nothing can be awaited here, so release without the loop.
                force_batch(batch, why="the coroutine leaving the manager was closed")
                return
            failures = await release_batch(batch)
        finally:
            registry.set_managed(state, False)
        if failures and not body_failed:
            raise ExceptionGroup(
                f"{len(failures)} resource release(s) failed on leaving the ResourceManager",
                failures,
            )

    async def acquire(self) -> ResourceManager:
        """Enter the manager: the explicit form of ``async with manager:``.

        Returns:
            The manager itself.

        Raises:
            RuntimeError: Another manager is active on the loop (and ``exist_ok`` is false),
                or this one is already active.
            LoopClosedError: The loop is closing.

        Call it from a coroutine on the loop whose resources it should manage.
        """
        return await self.__aenter__()

    async def release(self) -> None:
        """Leave the manager: release what the loop acquired, as a body that did not raise.

        Raises:
            ExceptionGroup: One or more release functions raised; every release was attempted.

        Call it from a coroutine on the loop the manager was entered on.
        """
        await self.__aexit__(None, None, None)

    @overload
    @classmethod
    def as_decorator(
        cls, func: F, *, templates: Iterable[ResourceTemplate[Any]] | None = None
    ) -> F: ...
    @overload
    @classmethod
    def as_decorator(
        cls, func: None = None, *, templates: Iterable[ResourceTemplate[Any]] | None = None
    ) -> Callable[[F], F]: ...
    @classmethod
    def as_decorator(
        cls,
        func: Callable[..., Any] | None = None,
        *,
        templates: Iterable[ResourceTemplate[Any]] | None = None,
    ) -> Any:
        """Run each call of the coroutine function ``func`` inside a fresh manager.

        Keeps the name, docstring and signature (``functools.wraps``). Without ``func``,
        returns a decorator: ``@resource_manager.as_decorator(templates=[engine])``.

        Args:
            func: The coroutine function.
            templates: As for :class:`ResourceManager`: the templates to acquire on entry
                instead of every non-lazy one.

        Raises:
            TypeError: ``func`` is not a coroutine function, or ``templates`` is not an
                iterable of ``ResourceTemplate`` (raised when decorating, not per call).

        .. versionadded:: 0.1.0
        """
        chosen = _check_templates(templates, "ResourceManager.as_decorator(templates=...)")
        if func is None:
            return functools.partial(cls._decorate, templates=chosen)
        return cls._decorate(func, templates=chosen)

    @classmethod
    def _decorate(cls, func: F, *, templates: tuple[ResourceTemplate[Any], ...] | None) -> F:
        if not iscoroutinefunction(func):
            raise TypeError(
                f"ResourceManager.as_decorator needs an async def function, got {func!r}; "
                "for a synchronous function use `async with resource_manager():` inside it"
            )

        @functools.wraps(func)
        async def managed(*args: Any, **kwargs: Any) -> Any:
            async with cls(templates=templates):
                return await func(*args, **kwargs)

        return managed  # type: ignore[return-value]


def _check_templates(
    templates: Iterable[ResourceTemplate[Any]] | None, what: str
) -> tuple[ResourceTemplate[Any], ...] | None:
    """``templates`` as a tuple, checked once; ``None`` stays ``None`` (every non-lazy one)."""
    if templates is None:
        return None
    if isinstance(templates, (ResourceTemplate, str, bytes)) or not isinstance(templates, Iterable):
        raise TypeError(
            f"{what} takes an iterable of ResourceTemplate (a list or tuple), got {templates!r}; "
            "for a single template write templates=[template]"
        )
    chosen = tuple(templates)
    for each in chosen:
        if not isinstance(each, ResourceTemplate):
            raise TypeError(f"{what} takes ResourceTemplate objects only, got {each!r}")
    return chosen


resource_manager = ResourceManager
"""Alias of :class:`ResourceManager`, as on Pyot's page."""
