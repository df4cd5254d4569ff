"""Recipe: a Django async view calling an API with a per-loop session."""

from __future__ import annotations

import aiohttp
from django.http import HttpRequest, JsonResponse

from resourceloop import ResourceTemplate

UPSTREAM = "http://127.0.0.1:8000"

sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="django-upstream"
)


async def summoner(request: HttpRequest, name: str) -> JsonResponse:
    session = await sessions.acquire()
    async with session.get(f"{UPSTREAM}/summoner/{name}") as upstream:
        return JsonResponse(await upstream.json())
