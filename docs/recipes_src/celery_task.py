"""Recipe: Celery tasks whose async bodies run on the worker's portal."""

from __future__ import annotations

from typing import Any

import aiohttp
from celery import Celery

from resourceloop import ResourceTemplate
from resourceloop.contrib.celery import async_task, install

app = Celery("recipes")
install()  # releases a prefork child's resources before billiard ends it
sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="celery-http", lazy=True
)


@app.task
@async_task(templates=[sessions])
async def match_duration_task(url: str) -> Any:
    # Runs on this worker process's portal: the session (and its
    # connections) made by the first task is reused by the next ones.
    session = await sessions.acquire()
    async with session.get(url) as response:
        return (await response.json())["duration"]
