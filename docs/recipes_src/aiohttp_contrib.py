"""Recipe: the ready-made template of resourceloop.contrib.aiohttp."""

from __future__ import annotations

# --8<-- [start:template]
from typing import Any

import aiohttp

from resourceloop.contrib.aiohttp import client_session_template

sessions = client_session_template(
    name="riot-api",
    timeout=aiohttp.ClientTimeout(total=30),
    headers={"User-Agent": "my-app/1.0"},
    raise_for_status=True,
)


async def get_json(url: str) -> Any:
    session = await sessions.acquire()
    async with session.get(url) as response:
        return await response.json()


# --8<-- [end:template]
