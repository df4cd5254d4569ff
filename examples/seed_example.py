"""The example of Pyot's "Resources" page, run for real with resourceloop's names.

The code of ``average_match_duration_millis`` is the seed page's, with three imports changed
(``pyot.core.resources`` -> ``resourceloop``, ``pyot.core.queue`` -> ``resourceloop.queue``,
``pyot.utils.sync`` -> ``resourceloop.sync``) and ``lol`` taken from the demo's tiny Riot-like
client. Instead of Riot's servers it talks to the demo server, started in this process on
127.0.0.1; nothing leaves the machine.

Run it with ``python examples/seed_example.py``. It prints each summoner's average match
duration, checks them against the server's data, and exits 1 if any session was not released.
"""

from __future__ import annotations

import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import List  # noqa: UP035 - as on the seed page

import resourceloop
from resourceloop import resource_manager
from resourceloop.demo import lol
from resourceloop.demo.server import DemoServer, expected_average_duration_millis
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync


@async_to_sync
async def average_match_duration_millis(summoner_name: str) -> float:
    # This function runs in a different thread and event loop
    async with resource_manager(), Queue() as queue:
        # At this point, resources are acquired for this event loop
        summoner = await lol.Summoner(name=summoner_name).get()
        history = await summoner.match_history.get()
        for match in history.matches[:5]:
            await queue.put(match.get())
        first_5_matches: List[lol.Match] = await queue.join()  # noqa: UP006
    # At this point, resources are released for this event loop
    return statistics.mean([match.info.duration_millis for match in first_5_matches] or [0])


@async_to_sync
@resource_manager.as_decorator
async def average_match_duration_millis_decorated(summoner_name: str) -> float:
    # Before entering scope, resources are acquired for this event loop
    async with Queue() as queue:
        summoner = await lol.Summoner(name=summoner_name).get()
        history = await summoner.match_history.get()
        for match in history.matches[:5]:
            await queue.put(match.get())
        first_5_matches: List[lol.Match] = await queue.join()  # noqa: UP006
    return statistics.mean([match.info.duration_millis for match in first_5_matches] or [0])
    # After exiting scope, resources are released for this event loop


def main() -> int:
    summoner_names = [f"summoner-{i}" for i in range(12)]
    wrong = 0
    with DemoServer() as server:
        lol.use(server.url)
        for function in (average_match_duration_millis, average_match_duration_millis_decorated):
            futures = []
            with ThreadPoolExecutor() as executor:
                for summoner_name in summoner_names:
                    futures.append(executor.submit(function, summoner_name))
                for summoner_name, future in zip(summoner_names, futures, strict=True):
                    average = future.result()
                    expected = expected_average_duration_millis(summoner_name)
                    wrong += average != expected
                    print(f"{function.__name__}({summoner_name!r}) = {average / 60000:.1f} min")
    stats = resourceloop.stats()
    live = resourceloop.live_resources()
    print(
        f"sessions created: {stats.acquisitions}, released gracefully: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}, still live: {len(live)}"
    )
    clean = not live and stats.acquisitions == stats.graceful_releases and not wrong
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
