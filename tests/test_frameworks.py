"""Frameworks and runners: unmanaged code works unchanged, and leaks nothing, under each.

The same library-style code (a ``ClientSession`` template acquired on demand, no
``resource_manager``) runs under asgiref's ``async_to_sync`` (what Django and Flask use), in a
Flask async view through Flask's test client, under ``ThreadPoolExecutor`` + ``asyncio.run``,
and on uvloop. Each time, every session is released gracefully on its own loop, the file
descriptors come back, and nothing warns. The seed page's example runs here as written, with
resourceloop's imports, against a Riot-like server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("aiohttp", reason="the aiohttp extra is not installed")

import resourceloop
from resourceloop import ResourceTemplate, resource_manager
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.queue import Queue
from resourceloop.sync import async_to_sync
from tests.aiohttp_server import (
    MATCHES_PER_HISTORY,
    Server,
    client_connections,
    count_fds,
    match_duration,
    running_server,
)

if TYPE_CHECKING:
    from flask import Flask


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


class Client:
    """Library-style code: one session template, used without any resource_manager."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http: ResourceTemplate[Any] = client_session_template(name="riot-http")

    async def get_json(self, path: str) -> Any:
        session = await self.http.acquire()
        async with session.get(self.server.url + path) as response:
            response.raise_for_status()
            return await response.json()


@pytest.fixture
def client(server: Server) -> Client:
    return Client(server)


@contextmanager
def no_leaks(
    server: Server, *, loops: int, per_loop: int = 1
) -> Iterator[list[warnings.WarningMessage]]:
    """Around a block that ran ``loops`` loops: fds back, all graceful, no warning at all."""
    baseline = count_fds(server)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        for _ in range(3):
            gc.collect()
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert client_connections(server) == 0
    assert count_fds(server) == baseline
    stats = resourceloop.stats()
    acquired = loops * per_loop
    assert stats.acquisitions == acquired
    assert (stats.graceful_releases, stats.forced_releases, stats.release_failures) == (
        acquired,
        0,
        0,
    )
    assert stats.loops_tracked == 0
    assert stats.resources_live == {}


def test_asgiref_async_to_sync(server: Server, client: Client) -> None:
    """asgiref's async_to_sync (Django, Flask): a new loop per call, each session released."""
    asgiref_sync = pytest.importorskip("asgiref.sync", reason="asgiref is not installed")

    async def view(name: str) -> str:
        summoner = await client.get_json(f"/summoner/{name}")
        return str(summoner["puuid"])

    with no_leaks(server, loops=20):
        for i in range(20):
            assert asgiref_sync.async_to_sync(view)(f"n{i}") == f"puuid-n{i}"


def test_flask_async_view(server: Server, client: Client) -> None:
    """A Flask async view, 50 requests through the test client: released every request."""
    flask = pytest.importorskip("flask", reason="flask is not installed")
    pytest.importorskip("asgiref", reason="Flask async views need flask[async] (asgiref)")
    app: Flask = flask.Flask(__name__)

    @app.get("/average/<name>")
    async def average(name: str) -> dict[str, Any]:
        summoner = await client.get_json(f"/summoner/{name}")
        history = await client.get_json(f"/summoner/{summoner['puuid']}/matches")
        first = await client.get_json(f"/match/{history['matches'][0]}")
        return {"duration": first["info"]["duration_millis"]}

    test_client = app.test_client()
    with no_leaks(server, loops=50):
        baseline = count_fds(server)
        for i in range(50):
            response = test_client.get(f"/average/s{i}")
            assert response.status_code == 200
            assert response.get_json() == {"duration": match_duration(f"puuid-s{i}-m0")}
            # Flat after every request: the request's loop closed and took its session along.
            assert count_fds(server) == baseline
            stats = resourceloop.stats()
            assert (stats.loops_tracked, stats.graceful_releases) == (0, i + 1)


def test_thread_pool_with_asyncio_run(server: Server, client: Client) -> None:
    """Each worker thread runs asyncio.run(); every loop's session is released on it."""

    def job(i: int) -> str:
        async def main() -> str:
            summoner = await client.get_json(f"/summoner/t{i}")
            return str(summoner["name"])

        return asyncio.run(main())

    with no_leaks(server, loops=24), ThreadPoolExecutor(8) as pool:
        assert list(pool.map(job, range(24))) == [f"t{i}" for i in range(24)]


def test_uvloop_run(server: Server, client: Client) -> None:
    """On uvloop (`uvloop.run`), the close hook releases the session gracefully too."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    async def main() -> str:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        return str((await client.get_json("/summoner/uv"))["puuid"])

    uvloop.run(asyncio.sleep(0))  # uvloop's first loop opens a process-wide pipe: not ours
    with no_leaks(server, loops=3):
        for _ in range(3):
            assert uvloop.run(main()) == "puuid-uv"


# -- the seed page's example, as written, with resourceloop's imports ---------------------------


class Summoner:
    """A stand-in for ``lol.Summoner``: same shape, served by the test server."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self.puuid = ""

    async def get(self) -> Summoner:
        self.puuid = (await self.client.get_json(f"/summoner/{self.name}"))["puuid"]
        return self

    @property
    def match_history(self) -> MatchHistory:
        return MatchHistory(self.client, self.puuid)


class MatchHistory:
    def __init__(self, client: Client, puuid: str) -> None:
        self.client = client
        self.puuid = puuid
        self.matches: list[Match] = []

    async def get(self) -> MatchHistory:
        data = await self.client.get_json(f"/summoner/{self.puuid}/matches")
        self.matches = [Match(self.client, match_id) for match_id in data["matches"]]
        return self


class MatchInfo:
    def __init__(self, duration_millis: int) -> None:
        self.duration_millis = duration_millis


class Match:
    def __init__(self, client: Client, match_id: str) -> None:
        self.client = client
        self.id = match_id
        self.info = MatchInfo(0)

    async def get(self) -> Match:
        data = await self.client.get_json(f"/match/{self.id}")
        self.info = MatchInfo(data["info"]["duration_millis"])
        return self


def expected_average(name: str) -> float:
    return statistics.mean(match_duration(f"puuid-{name}-m{i}") for i in range(5))


def test_seed_example(server: Server, client: Client) -> None:
    """The seed's Example, both forms, from a ThreadPoolExecutor: right answers, no leak."""
    assert MATCHES_PER_HISTORY >= 5

    class lol:
        @staticmethod
        def Summoner(name: str) -> Summoner:
            return Summoner(client, name)

    # The seed page's first form, unchanged but for the imports and the Summoner stand-in.
    @async_to_sync
    async def average_match_duration_millis(summoner_name: str) -> float:
        # This function runs in a different thread and event loop
        async with resource_manager(), Queue() as queue:
            # At this point, resources are acquired for this event loop
            summoner = await lol.Summoner(name=summoner_name).get()
            history = await summoner.match_history.get()
            for match in history.matches[:5]:
                await queue.put(match.get())
            first_5_matches: list[Match] = await queue.join()
        # At this point, resources are released for this event loop
        return statistics.mean([match.info.duration_millis for match in first_5_matches] or [0])

    # The decorator form.
    @async_to_sync
    @resource_manager.as_decorator
    async def average_decorated(summoner_name: str) -> float:
        # Before entering scope, resources are acquired for this event loop
        async with Queue() as queue:
            summoner = await lol.Summoner(name=summoner_name).get()
            history = await summoner.match_history.get()
            for match in history.matches[:5]:
                await queue.put(match.get())
            first_5_matches: list[Match] = await queue.join()
        return statistics.mean([match.info.duration_millis for match in first_5_matches] or [0])
        # After exiting scope, resources are released for this event loop

    summoner_names = [f"player{i}" for i in range(12)]
    # resource_manager() acquires every live non-lazy template, ours and any other one alive.
    eager = sum(1 for template in resourceloop.resource_templates if not template.lazy)
    with no_leaks(server, loops=2 * len(summoner_names), per_loop=eager):
        for function in (average_match_duration_millis, average_decorated):
            futures = []
            with ThreadPoolExecutor() as executor:
                for summoner_name in summoner_names:
                    futures.append(executor.submit(function, summoner_name))
                results = [future.result() for future in futures]
            assert results == [expected_average(name) for name in summoner_names]
