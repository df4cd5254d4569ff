"""Recipe: a redis-py asyncio client (and its pool) per event loop."""

from __future__ import annotations

import redis.asyncio as redis

from resourceloop import ResourceTemplate

REDIS_URL = "redis://localhost:6379/0"


def connect() -> redis.Redis:
    # from_url() gives the client its own connection pool, closed by aclose().
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


async def disconnect(client: redis.Redis) -> None:
    await client.aclose()


clients = ResourceTemplate(connect, disconnect, name="redis")


async def count_visit(page: str) -> int:
    client = await clients.acquire()
    return int(await client.incr(f"visits:{page}"))
