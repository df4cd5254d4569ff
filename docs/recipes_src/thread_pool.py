"""Recipe: fan work out over a ThreadPoolExecutor, one event loop per call."""

from __future__ import annotations

import asyncio
import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from resourceloop import ResourceTemplate

sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="pool-http"
)


async def durations(base: str, match_ids: list[str]) -> list[int]:
    session = await sessions.acquire()

    async def one(match_id: str) -> int:
        async with session.get(f"{base}/match/{match_id}") as response:
            body: dict[str, Any] = await response.json()
            return int(body["duration"])

    return list(
        await asyncio.gather(*(one(match_id) for match_id in match_ids))
    )


def average_duration(base: str, match_ids: list[str]) -> float:
    # Runs in a worker thread: asyncio.run() makes a loop and closes it,
    # and its session with it.
    return statistics.mean(asyncio.run(durations(base, match_ids)))


def averages(base: str, batches: list[list[str]]) -> list[float]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = [
            executor.submit(average_duration, base, batch)
            for batch in batches
        ]
        return [future.result() for future in futures]
