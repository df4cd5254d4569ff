"""Recipe: a Flask async view calling an API with a per-loop session."""

from __future__ import annotations

from typing import Any

import aiohttp
from flask import Flask

from resourceloop import ResourceTemplate

UPSTREAM = "http://127.0.0.1:8000"

app = Flask(__name__)
sessions = ResourceTemplate(
    aiohttp.ClientSession, lambda s: s.close(), name="flask-upstream"
)


@app.get("/summoner/<name>")
async def summoner(name: str) -> Any:
    session = await sessions.acquire()
    async with session.get(f"{UPSTREAM}/summoner/{name}") as upstream:
        return await upstream.json()
