"""Recipe: pytest-asyncio tests, leak-checked by the resourceloop plugin."""

from __future__ import annotations

import aiohttp
import pytest

from resourceloop import ResourceTemplate

sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="api-session"
)


@pytest.mark.asyncio
async def test_each_test_gets_its_own_session() -> None:
    session = await sessions.acquire()
    assert not session.closed
    # One per loop, and pytest-asyncio gave this test a loop of its own:
    assert await sessions.acquire() is session
