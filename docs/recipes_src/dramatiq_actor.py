"""Recipe: a Dramatiq actor running async code in a managed loop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import dramatiq

from resourceloop import ResourceTemplate, resource_manager

sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="dramatiq-http"
)


@resource_manager.as_decorator
async def match_duration(url: str) -> Any:
    session = await sessions.acquire()
    async with session.get(url) as response:
        return (await response.json())["duration"]


@dramatiq.actor
def record_match_duration(url: str) -> None:
    duration = asyncio.run(match_duration(url))
    print(f"{url}: {duration} ms")
