"""Live, read-only views of the registry: the managed loops and the live templates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence, Set
from typing import Any, final, overload

from ._registry import registry
from ._state import GONE
from ._template import ResourceTemplate

__all__ = ["ManagedLoops", "Templates"]


@final
class ManagedLoops(Set[asyncio.AbstractEventLoop]):
    """The event loops inside an active ``ResourceManager`` right now: a live, read-only set."""

    __slots__ = ()

    def __contains__(self, loop: object) -> bool:
        if not isinstance(loop, asyncio.AbstractEventLoop):
            return False
        state = registry.get(loop)
        return state is not None and state.managed and state.phase is not GONE

    def __iter__(self) -> Iterator[asyncio.AbstractEventLoop]:
        return iter(registry.managed_loops())

    def __len__(self) -> int:
        return len(registry.managed_loops())

    def __repr__(self) -> str:
        return f"resource_managed_loops({set(self)!r})"


@final
class Templates(Sequence[ResourceTemplate[Any]]):
    """Every live ``ResourceTemplate``, in creation order: a live, read-only list.

    It refers to templates weakly: a template referenced nowhere else disappears from it.
    """

    __slots__ = ()

    @overload
    def __getitem__(self, index: int) -> ResourceTemplate[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[ResourceTemplate[Any]]: ...
    def __getitem__(
        self, index: int | slice
    ) -> ResourceTemplate[Any] | list[ResourceTemplate[Any]]:
        return registry.templates()[index]

    def __iter__(self) -> Iterator[ResourceTemplate[Any]]:
        return iter(registry.templates())

    def __len__(self) -> int:
        return len(registry.templates())

    def __contains__(self, template: object) -> bool:
        return any(t is template for t in registry.templates())

    def __repr__(self) -> str:
        return f"resource_templates({registry.templates()!r})"
