"""Recipe: an aiohttp.ClientSession per event loop, written by hand."""

from __future__ import annotations

# --8<-- [start:template]
from typing import Any

import aiohttp

from resourceloop import ResourceTemplate


async def open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()


sessions = ResourceTemplate(
    open_session, close_session, name="aiohttp-session"
)


async def get_json(url: str) -> Any:
    session = await sessions.acquire()
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


# --8<-- [end:template]
