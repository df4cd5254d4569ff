"""Recipe: a SQLAlchemy AsyncEngine (and its pool) per event loop."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from resourceloop import ResourceTemplate

DATABASE_URL = "postgresql+asyncpg://app@localhost/app"


def create_engine() -> AsyncEngine:
    return create_async_engine(DATABASE_URL, pool_pre_ping=True)


async def dispose_engine(engine: AsyncEngine) -> None:
    await engine.dispose()


engines = ResourceTemplate(
    create_engine, dispose_engine, name="sqlalchemy-engine"
)


async def answer() -> int:
    engine = await engines.acquire()
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT 42"))
        return int(result.scalar_one())
