"""Recipe: a SQLAlchemy AsyncEngine (and its pool) per event loop."""

from __future__ import annotations

import os

from sqlalchemy import text

from resourceloop.contrib.sqlalchemy import async_engine_template

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql+asyncpg://app@localhost/app"
)

engines = async_engine_template(
    DATABASE_URL, name="sqlalchemy-engine", pool_pre_ping=True
)


async def answer() -> int:
    engine = await engines.acquire()
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT 42"))
        return int(result.scalar_one())
