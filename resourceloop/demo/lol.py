"""A tiny Riot-like client for the demo server, shaped like Pyot's ``pyot.models.lol``.

It lets the seed page's example run as written::

    summoner = await lol.Summoner(name=summoner_name).get()
    history = await summoner.match_history.get()
    for match in history.matches[:5]:
        await queue.put(match.get())
    first_5_matches = await queue.join()
    statistics.mean([match.info.duration_millis for match in first_5_matches] or [0])

Every request goes through the session of the running loop: by default the resourceloop
template :data:`http` (one ``aiohttp.ClientSession`` per loop, always released), or whatever
:func:`use` installs (the demo's baseline installs a hand-written per-loop dict).

Call :func:`use` with the server's URL first. The models are plain objects of the loop that
fetched them.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from resourceloop.contrib.aiohttp import client_session_template

__all__ = ["Match", "MatchHistory", "MatchInfo", "Summoner", "http", "use"]

SessionProvider = Callable[[], Awaitable[aiohttp.ClientSession]]

http = client_session_template(name="riot-http")
"""The session template: each event loop gets its own ``aiohttp.ClientSession``."""

_base_url: str | None = None
_provider: SessionProvider = http.acquire


def use(base_url: str, session_provider: SessionProvider | None = None) -> None:
    """Point the models at ``base_url``; optionally fetch sessions from ``session_provider``.

    Args:
        base_url: The API root, e.g. ``DemoServer.url``.
        session_provider: An async function returning the running loop's session; ``None``
            restores the resourceloop template :data:`http`.

    Call it before running requests, from any thread.
    """
    global _base_url, _provider
    _base_url = base_url.rstrip("/")
    _provider = session_provider if session_provider is not None else http.acquire


async def _get_json(path: str) -> Any:
    if _base_url is None:
        raise RuntimeError("call resourceloop.demo.lol.use(base_url) before fetching")
    session = await _provider()
    async with session.get(_base_url + path) as response:
        response.raise_for_status()
        return await response.json()


class Summoner:
    """A summoner, looked up by name with :meth:`get`."""

    def __init__(self, *, name: str) -> None:
        self.name = name
        self.puuid: str | None = None
        self.level: int | None = None

    async def get(self) -> Summoner:
        data = await _get_json(f"/lol/summoner/v4/summoners/by-name/{quote(self.name, safe='')}")
        self.puuid = data["puuid"]
        self.level = data["summonerLevel"]
        return self

    @property
    def match_history(self) -> MatchHistory:
        if self.puuid is None:
            raise RuntimeError("fetch the summoner first: await summoner.get()")
        return MatchHistory(puuid=self.puuid)


class MatchHistory:
    """The ids of a summoner's recent matches; :attr:`matches` are unfetched :class:`Match`."""

    def __init__(self, *, puuid: str, count: int = 20) -> None:
        self.puuid = puuid
        self.count = count
        self.ids: list[str] = []

    async def get(self) -> MatchHistory:
        self.ids = await _get_json(
            f"/lol/match/v5/matches/by-puuid/{self.puuid}/ids?count={self.count}"
        )
        return self

    @property
    def matches(self) -> list[Match]:
        return [Match(id=match_id) for match_id in self.ids]


class MatchInfo:
    """The part of a match the example needs."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.game_id: int = data["gameId"]
        self.game_mode: str = data["gameMode"]
        self.duration_millis: int = data["gameDuration"] * 1000  # match-v5 gives seconds


class Match:
    """One match; :meth:`get` fetches its :attr:`info`."""

    def __init__(self, *, id: str) -> None:
        self.id = id
        self._info: MatchInfo | None = None

    async def get(self) -> Match:
        data = await _get_json(f"/lol/match/v5/matches/{self.id}")
        self._info = MatchInfo(data["info"])
        return self

    @property
    def info(self) -> MatchInfo:
        if self._info is None:
            raise RuntimeError("fetch the match first: await match.get()")
        return self._info
