"""Recipe: a Celery task running async code in a managed loop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from celery import Celery

from resourceloop import ResourceTemplate, resource_manager

app = Celery("recipes")
sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="celery-http"
)


@resource_manager.as_decorator
async def match_duration(url: str) -> Any:
    # Resources are acquired before this body runs and released after
    # it, on this loop.
    session = await sessions.acquire()
    async with session.get(url) as response:
        return (await response.json())["duration"]


@app.task
def match_duration_task(url: str) -> Any:
    return asyncio.run(match_duration(url))
