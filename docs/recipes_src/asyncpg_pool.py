"""Recipe: an asyncpg connection pool per event loop."""

from __future__ import annotations

import os

from resourceloop.contrib.asyncpg import pool_template

DSN = os.environ.get("POSTGRES_DSN", "postgresql://app@localhost/app")

pools = pool_template(DSN, name="asyncpg-pool", min_size=1, max_size=5)


async def user_count() -> int:
    pool = await pools.acquire()
    async with pool.acquire() as connection:
        return int(await connection.fetchval("SELECT count(*) FROM users"))
