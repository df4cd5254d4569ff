"""Fan out over a ``ThreadPoolExecutor``, each thread running ``asyncio.run``: no code change.

Each task runs ``asyncio.run(...)`` in a pool thread, so every task gets a new event loop, and
each loop its own ``aiohttp.ClientSession`` from the template. There is no ``resource_manager``
here: when ``asyncio.run`` closes a loop, resourceloop's close hook closes that loop's session
on the loop, just before it closes. The file descriptors come back to where they started.

Run it with ``python examples/threadpool_fanout.py`` (it starts the demo server on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

import resourceloop
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.demo.measure import count_fds
from resourceloop.demo.server import DemoServer

http = client_session_template(name="fanout-http")


async def summoner_levels(base_url: str, names: list[str]) -> list[int]:
    session = await http.acquire()  # this loop's session, created on first use

    async def level(name: str) -> int:
        url = f"{base_url}/lol/summoner/v4/summoners/by-name/{name}"
        async with session.get(url) as response:
            response.raise_for_status()
            data = await response.json()
        return int(data["summonerLevel"])

    return await asyncio.gather(*(level(name) for name in names))


def task(base_url: str, batch: list[str]) -> list[int]:
    return asyncio.run(summoner_levels(base_url, batch))  # a new loop per task


def main() -> int:
    batches = [[f"player-{b}-{i}" for i in range(4)] for b in range(16)]
    with DemoServer(latency=0.001) as server:
        fds_before = count_fds(server.port)  # the server's own sockets excluded
        with ThreadPoolExecutor(max_workers=4) as pool:
            levels = list(pool.map(task, [server.url] * len(batches), batches))
        fds_after = count_fds(server.port)
    stats = resourceloop.stats()
    print(f"{len(batches)} tasks, {sum(len(b) for b in levels)} summoners fetched")
    print(
        f"sessions created: {stats.acquisitions}, released gracefully by the close hook: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}"
    )
    print(f"open file descriptors: {fds_before} before, {fds_after} after")
    clean = (
        stats.acquisitions == stats.graceful_releases == len(batches)
        and not resourceloop.live_resources()
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
