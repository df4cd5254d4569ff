"""The README's usage example, as written, run against a local server.

Between the ``start``/``end`` markers is the README's "Usage" snippet, character for character
(``tests/test_examples.py`` checks it). Below them, ``__main__`` starts the demo server on
127.0.0.1 (an ephemeral port; nothing leaves the machine) and calls ``run`` with its URL.

Run it with ``python examples/readme_usage.py``: it fetches one summoner three ways, prints
what each released, and exits 1 if any session was not released gracefully.
"""

from __future__ import annotations

# --8<-- [start:usage]
import asyncio

import aiohttp

from resourceloop import ResourceTemplate, resource_manager

session = ResourceTemplate(aiohttp.ClientSession, lambda s: s.close(), name="http")


async def fetch(url: str) -> str:
    http = await session.acquire()  # this loop's own ClientSession, created on first use
    async with http.get(url) as response:
        return await response.text()


# Or say where the resources live and die:
async def managed(url: str) -> str:
    async with resource_manager():  # acquires every non-lazy template for this loop
        text = await fetch(url)
    # released here, newest first, on this loop
    return text


@resource_manager.as_decorator
async def task(url: str) -> str:  # e.g. a Celery task body or a Django async view
    return await fetch(url)


def run(url: str) -> None:
    # No code change needed: the session is closed on its loop just before asyncio.run
    # closes it.
    print(asyncio.run(fetch(url)))
    print(asyncio.run(managed(url)))
    print(asyncio.run(task(url)))


# --8<-- [end:usage]


def main() -> int:
    import resourceloop
    from resourceloop.demo.server import DemoServer

    with DemoServer(latency=0.001) as server:
        run(f"{server.url}/lol/summoner/v4/summoners/by-name/ahri")
    stats = resourceloop.stats()
    print(
        f"sessions created: {stats.acquisitions}, released gracefully: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}"
    )
    clean = stats.acquisitions == stats.graceful_releases == 3 and not resourceloop.live_resources()
    return 0 if clean else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
