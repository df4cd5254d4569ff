"""Getting started: one aiohttp session per loop, many threads, no leak."""

from __future__ import annotations

# --8<-- [start:example]
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from resourceloop import ResourceTemplate

# One ClientSession per event loop: created there on first use, closed
# there before the loop closes.
http = ResourceTemplate(
    aiohttp.ClientSession, lambda session: session.close(), name="http"
)


async def fetch(url: str) -> Any:
    # The same session for every call on this loop:
    session = await http.acquire()
    async with session.get(url) as response:
        return await response.json()


def fetch_in_a_thread(url: str) -> Any:
    # A new loop each time; its session is closed with it.
    return asyncio.run(fetch(url))


def main(url: str) -> list[Any]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fetch_in_a_thread, [url] * 8))


# --8<-- [end:example]
