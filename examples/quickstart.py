"""Getting started: one aiohttp session per loop, many threads, no leak.

The documentation's home page shows the part between the ``start``/``end`` markers. Below
them, ``__main__`` starts the demo server on 127.0.0.1 (an ephemeral port; nothing leaves the
machine) and calls ``main`` with one of its URLs.

Run it with ``python examples/quickstart.py``: it prints what the eight calls returned and what
was released, and exits 1 if any session was not released gracefully.
"""

from __future__ import annotations

# --8<-- [start:example]
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from resourceloop import ResourceTemplate

# One ClientSession per event loop: created there on first use, closed
# there before the loop closes.
http = ResourceTemplate(
    aiohttp.ClientSession,
    lambda session: session.close(),
    name="http",
)


async def fetch(url: str) -> Any:
    # The same session for every call on this loop:
    session = await http.acquire()
    async with session.get(url) as response:
        return await response.json()


def fetch_in_a_thread(url: str) -> Any:
    # A new loop each time; its session is closed with it.
    return asyncio.run(fetch(url))


def main(url: str) -> list[Any]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fetch_in_a_thread, [url] * 8))


# --8<-- [end:example]

if __name__ == "__main__":
    import sys

    import resourceloop
    from resourceloop.demo.server import DemoServer

    with DemoServer(latency=0.001) as server:
        results = main(f"{server.url}/lol/summoner/v4/summoners/by-name/ahri")
    print(f"{len(results)} calls, first answer: {results[0]}")
    stats = resourceloop.stats()
    print(
        f"sessions created: {stats.acquisitions}, released gracefully by the close hook: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}"
    )
    sys.exit(0 if stats.acquisitions == stats.graceful_releases == 8 else 1)
