"""Recipe: an httpx.AsyncClient per event loop."""

from __future__ import annotations

from typing import Any

from resourceloop.contrib.httpx import async_client_template

clients = async_client_template(name="httpx-client", timeout=10.0)


async def get_json(url: str) -> Any:
    client = await clients.acquire()
    response = await client.get(url)
    response.raise_for_status()
    return response.json()
