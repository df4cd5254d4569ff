"""Recipe: an asyncpg connection pool per event loop."""

from __future__ import annotations

import asyncpg

from resourceloop import ResourceTemplate

DSN = "postgresql://app@localhost/app"


async def open_pool() -> asyncpg.Pool:
    return await asyncpg.create_pool(DSN, min_size=1, max_size=5)


async def close_pool(pool: asyncpg.Pool) -> None:
    # Waits until every connection is back in the pool (bounded by
    # release_timeout).
    await pool.close()


def terminate_pool(pool: asyncpg.Pool) -> None:
    # Synchronous and immediate: what is left when close() timed out
    # or the loop is gone.
    pool.terminate()


pools = ResourceTemplate(
    open_pool,
    close_pool,
    name="asyncpg-pool",
    force_release_func=terminate_pool,
)


async def user_count() -> int:
    pool = await pools.acquire()
    async with pool.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM users"))
