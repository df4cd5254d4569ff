"""A Flask async view that uses a per-loop ``aiohttp.ClientSession``, unmanaged.

Flask runs each ``async def`` view with asgiref's ``async_to_sync``: every request gets a new
event loop, which is closed when the view returns. The view below just asks the template for
its loop's session; it has no ``resource_manager`` and no cleanup code. resourceloop's close
hook closes the session on its loop just before asgiref closes the loop, so each request's
session is released, the file descriptors stay flat, and no warning is printed per request.

Run it with ``python examples/flask_async_view.py``: it starts the demo server on 127.0.0.1,
sends requests through Flask's test client and prints what happened. ``--serve`` runs the
Flask development server on 127.0.0.1:5000 instead (stop it with Ctrl-C).
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask

import resourceloop
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.demo.measure import count_fds
from resourceloop.demo.server import DemoServer

http = client_session_template(name="flask-http")
app = Flask(__name__)
app.config["API_URL"] = "http://127.0.0.1:0"  # set in main()


@app.get("/summoners/<name>")
async def summoner(name: str) -> dict[str, Any]:
    session = await http.acquire()  # this request's loop gets its own session
    url = f"{app.config['API_URL']}/lol/summoner/v4/summoners/by-name/{name}"
    async with session.get(url) as response:
        response.raise_for_status()
        data: dict[str, Any] = await response.json()
    return {"name": data["name"], "level": data["summonerLevel"]}


def main(argv: list[str]) -> int:
    requests = 20
    with DemoServer(latency=0.001) as server:
        app.config["API_URL"] = server.url
        if "--serve" in argv:
            app.run(host="127.0.0.1", port=5000)
            return 0
        client = app.test_client()
        fds = []
        for i in range(requests):
            response = client.get(f"/summoners/player-{i}")
            if response.status_code != 200:
                print(f"request {i} failed: {response.status_code}", file=sys.stderr)
                return 1
            fds.append(count_fds(server.port))  # the server's own sockets excluded
    stats = resourceloop.stats()
    print(f"{requests} requests to an async Flask view, each on its own event loop")
    print(
        f"sessions created: {stats.acquisitions}, released gracefully by the close hook: "
        f"{stats.graceful_releases}, forcefully: {stats.forced_releases}"
    )
    print(f"open file descriptors after each request: min {min(fds)}, max {max(fds)}")
    clean = (
        stats.acquisitions == stats.graceful_releases == requests
        and not resourceloop.live_resources()
        and min(fds) == max(fds)
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
