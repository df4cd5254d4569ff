"""Recipe: what the leak check reports."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from resourceloop import ResourceTemplate

sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="api-session"
)


@pytest.mark.asyncio
async def test_closes_its_loop() -> None:
    assert not (
        await sessions.acquire()
    ).closed  # pytest-asyncio closes the loop: released


def test_leaves_a_loop_open() -> None:
    loop = asyncio.new_event_loop()  # never closed: its session would leak
    loop.run_until_complete(sessions.acquire())
