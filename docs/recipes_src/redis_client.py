"""Recipe: a redis-py asyncio client (and its pool) per event loop."""

from __future__ import annotations

import os

from resourceloop.contrib.redis import redis_template

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

clients = redis_template(REDIS_URL, name="redis", decode_responses=True)


async def count_visit(page: str) -> int:
    client = await clients.acquire()
    return int(await client.incr(f"visits:{page}"))
