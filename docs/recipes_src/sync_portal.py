"""Recipe: blocking callers on one long-lived loop, the portal."""

from __future__ import annotations

# --8<-- [start:portal]
import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resourceloop import resource_manager
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync

sessions = client_session_template(name="portal-http")


async def get_json(url: str) -> Any:
    session = await sessions.acquire()  # the portal loop's one session
    async with session.get(url) as response:
        return await response.json()


async def mean_duration(base: str, match_ids: list[str]) -> float:
    # On the portal this manager acquires but releases nothing: the
    # session and its open connections stay for the next call.
    async with resource_manager(), Queue() as queue:
        for match_id in match_ids:
            await queue.put(get_json(f"{base}/match/{match_id}"))
        matches = await queue.join()
    return statistics.mean(match["duration"] for match in matches)


# Every call runs on the default portal's loop (as a decorator:
# @async_to_sync(portal=True)).
average_duration = async_to_sync(mean_duration, portal=True)


def averages(base: str, batches: list[list[str]]) -> list[float]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = [
            executor.submit(average_duration, base, batch)
            for batch in batches
        ]
        return [future.result() for future in futures]


# --8<-- [end:portal]


# --8<-- [start:own]
from resourceloop.sync import Portal  # noqa: E402


def nightly_report(base: str, batches: list[list[str]]) -> list[float]:
    # A portal of your own: its resources are released when the block ends.
    with (
        Portal(name="nightly") as portal,
        ThreadPoolExecutor(max_workers=4) as executor,
    ):
        futures = [
            executor.submit(portal.call, mean_duration, base, batch)
            for batch in batches
        ]
        return [future.result() for future in futures]


# --8<-- [end:own]
