"""Recipe: an httpx.AsyncClient per event loop."""

from __future__ import annotations

from typing import Any

import httpx

from resourceloop import ResourceTemplate


def open_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10.0)


async def close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()


clients = ResourceTemplate(open_client, close_client, name="httpx-client")


async def get_json(url: str) -> Any:
    client = await clients.acquire()
    response = await client.get(url)
    response.raise_for_status()
    return response.json()
