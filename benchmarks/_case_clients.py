"""Case ``clients``: the first acquisition of each contrib client against a hand-kept one (#19).

For every contrib template, on fresh event loops, side by side in one run:

``template``
    ``await template.acquire()`` (released by the close hook when the loop closes, untimed).
``hand-kept``
    What a user writes without resourceloop: a per-loop dict, get-or-create with the same
    keyword arguments as the template's (``httpx.AsyncClient(**kwargs)`` ...), closed by hand
    before the loop closes (untimed). Where the library builds an SSL context per client,
    this one does too.
``hand-kept, one context``
    The same, with the SSL context made once and passed in (``verify=context``): what an
    experienced user writes, and the strictest floor for the template.

Each is timed twice per loop: the acquisition alone, and the acquisition plus the first
request (a GET, a chat completion, a message, ``PING``, ``SELECT 1``), which opens the first
connection and, over HTTPS, makes the TLS handshake. The HTTP clients run against a local
aiohttp server on 127.0.0.1, plain and HTTPS (a self-signed certificate, made as for the
``portal`` case); redis and PostgreSQL against private servers started from their binaries
(``tests/servers.py``), plain only. The implementations take turns one loop at a time, in a
rotating order, each loop after an untimed ``gc.collect()``; a time is the median over all
loops, a ratio the median of the ratios of adjacent loops, so that load from other processes
on a shared machine hits both sides of each ratio alike.

Targets (#19): the httpx template's first acquisition <= 3x the aiohttp template's, and each
template's first acquisition (and acquisition plus first request) <= 1.5x the hand-kept client
configured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import statistics
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from resourceloop import ResourceTemplate

from ._harness import Row, Settings, environment, interleave, now
from ._portal import _self_signed

__all__ = ["case_clients"]

TEMPLATE = "template"
HAND = "hand-kept"
HAND_SHARED = "hand-kept, one context"
IMPLEMENTATIONS = (TEMPLATE, HAND, HAND_SHARED)
BARE = "(none: object())"


# -- the HTTP server: "/", OpenAI's chat completions and Anthropic's messages ---------------------


def _app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        message = {"role": "assistant", "content": "ok"}
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        )

    async def messages(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        )

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    return app


@contextlib.contextmanager
def _http_server(context: ssl.SSLContext | None) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(), handle_signals=False)
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        loop.run_until_complete(site.start())
        port.append(runner.addresses[0][1])
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="bench-clients-server", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the benchmark's HTTP server did not start")
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{port[0]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


# -- what each client is ---------------------------------------------------------------------------


@dataclass
class Spec:
    """One contrib client over one transport: its template, the hand-kept ones, its request."""

    client: str
    transport: str
    template: Callable[[], ResourceTemplate[Any]]
    make: dict[str, Callable[[], Any]]  # HAND / HAND_SHARED: make a client on the running loop
    first: Callable[[Any], Awaitable[Any]]
    close: Callable[[Any], Awaitable[Any]]
    note: str = ""
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)


async def _made(value: Any) -> Any:
    """The client ``make()`` returned, awaited if it is awaitable (``asyncpg.create_pool``)."""
    return await value if inspect.isawaitable(value) else value


def _http_specs(base: str, verify: ssl.SSLContext | None, transport: str) -> list[Spec]:
    """aiohttp, httpx, openai and anthropic against ``base``; ``verify`` trusts its certificate."""
    import aiohttp
    import anthropic
    import httpx
    import openai

    from resourceloop.contrib.aiohttp import client_session_template
    from resourceloop.contrib.anthropic import async_anthropic_template
    from resourceloop.contrib.httpx import async_client_template
    from resourceloop.contrib.openai import async_openai_template

    tls = verify is not None
    # What the user passes: nothing for plain HTTP (the libraries' defaults, which verify
    # against the system's or certifi's CA store), the context that trusts the server for TLS.
    given: dict[str, Any] = {"verify": verify} if tls else {}
    import httpx2

    # The one context of the "one context" columns: the given one, or the library's own.
    httpx_ctx = verify if verify is not None else httpx.create_ssl_context()
    sdk_shared = verify if verify is not None else httpx2.create_ssl_context()
    aiohttp_ssl: Any = verify if tls else True

    async def get(client: Any) -> None:
        if isinstance(client, aiohttp.ClientSession):
            async with client.get(base + "/") as response:
                await response.read()
        else:
            (await client.get(base + "/")).raise_for_status()

    async def chat(client: Any) -> None:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )

    async def message(client: Any) -> None:
        await client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )

    async def aclose(client: Any) -> None:
        await client.aclose()

    async def close(client: Any) -> None:
        await client.close()

    openai_kwargs: dict[str, Any] = {"api_key": "bench", "base_url": base + "/v1", "max_retries": 0}
    anthropic_kwargs: dict[str, Any] = {"api_key": "bench", "base_url": base, "max_retries": 0}

    def openai_hand() -> Any:
        if not tls:
            return openai.AsyncOpenAI(**openai_kwargs)  # the SDK's own client, its own context
        http = openai.DefaultAsyncHttpxClient(verify=sdk_shared)  # the given context
        return openai.AsyncOpenAI(http_client=http, **openai_kwargs)

    def anthropic_hand() -> Any:
        if not tls:
            return anthropic.AsyncAnthropic(**anthropic_kwargs)
        http = anthropic.DefaultAsyncHttpxClient(verify=sdk_shared)
        return anthropic.AsyncAnthropic(http_client=http, **anthropic_kwargs)

    return [
        Spec(
            "aiohttp",
            transport,
            lambda: client_session_template(
                name=f"bench-aiohttp-{transport}",
                connector_factory=lambda: aiohttp.TCPConnector(ssl=aiohttp_ssl),
            ),
            {
                HAND: lambda: aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=aiohttp_ssl)
                ),
            },
            get,
            close,
            note="aiohttp shares its default SSL context by itself: no separate column",
        ),
        Spec(
            "httpx",
            transport,
            lambda: async_client_template(name=f"bench-httpx-{transport}", **given),
            {
                HAND: lambda: httpx.AsyncClient(**given),
                HAND_SHARED: lambda: httpx.AsyncClient(verify=httpx_ctx),
            },
            get,
            aclose,
        ),
        Spec(
            "openai",
            transport,
            lambda: async_openai_template(
                name=f"bench-openai-{transport}",
                http_client_kwargs=given,
                **openai_kwargs,
            ),
            {
                HAND: openai_hand,
                HAND_SHARED: lambda: openai.AsyncOpenAI(
                    http_client=openai.DefaultAsyncHttpxClient(verify=sdk_shared),
                    **openai_kwargs,
                ),
            },
            chat,
            close,
        ),
        Spec(
            "anthropic",
            transport,
            lambda: async_anthropic_template(
                name=f"bench-anthropic-{transport}",
                http_client_kwargs=given,
                **anthropic_kwargs,
            ),
            {
                HAND: anthropic_hand,
                HAND_SHARED: lambda: anthropic.AsyncAnthropic(
                    http_client=anthropic.DefaultAsyncHttpxClient(verify=sdk_shared),
                    **anthropic_kwargs,
                ),
            },
            message,
            close,
        ),
    ]


def _bare_spec() -> Spec:
    """resourceloop's own cost: a template of a plain ``object()`` against a dict of them."""

    async def nothing(resource: Any) -> None:
        pass

    return Spec(
        BARE,
        "-",
        lambda: ResourceTemplate(object, nothing, name="bench-bare"),
        {HAND: object},
        nothing,
        nothing,
        note="resourceloop's fixed cost of a first acquisition on a fresh loop (tracking the "
        "loop, its close hook), which every template above pays once per loop",
    )


def _redis_spec(url: str) -> Spec:
    import redis.asyncio

    from resourceloop.contrib.redis import redis_template

    async def ping(client: Any) -> None:
        await client.ping()

    async def aclose(client: Any) -> None:
        await client.aclose()

    return Spec(
        "redis",
        "TCP",
        lambda: redis_template(url, name="bench-redis"),
        {HAND: lambda: redis.asyncio.Redis.from_url(url)},
        ping,
        aclose,
        note="no TLS server here: plain only",
    )


def _postgres_specs(dsn: str) -> list[Spec]:
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from resourceloop.contrib.asyncpg import pool_template
    from resourceloop.contrib.sqlalchemy import async_engine_template

    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def select_pool(pool: Any) -> None:
        async with pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def select_engine(engine: Any) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(pool: Any) -> None:
        await pool.close()

    async def dispose(engine: Any) -> None:
        await engine.dispose()

    return [
        Spec(
            "asyncpg",
            "TCP",
            lambda: pool_template(dsn, name="bench-asyncpg", min_size=1, max_size=2),
            {HAND: lambda: asyncpg.create_pool(dsn, min_size=1, max_size=2)},
            select_pool,
            close,
            note="no TLS server here: plain only; the pool connects at creation",
        ),
        Spec(
            "sqlalchemy",
            "TCP",
            lambda: async_engine_template(url, name="bench-sqlalchemy", pool_size=2),
            {HAND: lambda: create_async_engine(url, pool_size=2)},
            select_engine,
            dispose,
            note="no TLS server here: plain only",
        ),
    ]


# -- measuring ---------------------------------------------------------------------------------


def _run_loops(
    loops: int,
    acquire: Callable[[], Awaitable[Any]],
    first: Callable[[Any], Awaitable[Any]],
    close: Callable[[Any], Awaitable[Any]] | None,
    out: dict[str, list[float]],
) -> float:
    """``loops`` fresh loops; per loop, time the acquisition and the first request."""
    for _ in range(loops):
        loop = asyncio.new_event_loop()

        async def one() -> tuple[float, float]:
            start = now()
            client = await acquire()
            acquired = now()
            await first(client)
            done = now()
            if close is not None:
                await close(client)
            return acquired - start, done - start

        try:
            acquire_s, total_s = loop.run_until_complete(one())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # a template's client is released here, by the close hook
        out["acquire"].append(acquire_s)
        out["first_request"].append(total_s)
    return 0.0


def _measure(spec: Spec, loops: int, rounds: int, warmups: int) -> None:
    template = spec.template()
    spec.samples = {name: {"acquire": [], "first_request": []} for name in (TEMPLATE, *spec.make)}

    def hand(name: str) -> Callable[[], float]:
        make = spec.make[name]
        table: dict[asyncio.AbstractEventLoop, Any] = {}

        async def get_or_create() -> Any:
            loop = asyncio.get_running_loop()
            client = table.get(loop)
            if client is None:
                client = table[loop] = await _made(make())
            return client

        async def close(client: Any) -> None:
            table.pop(asyncio.get_running_loop(), None)
            await spec.close(client)

        return lambda: _run_loops(1, get_or_create, spec.first, close, spec.samples[name])

    runners: dict[str, Callable[[], float]] = {
        TEMPLATE: lambda: _run_loops(1, template.acquire, spec.first, None, spec.samples[TEMPLATE]),
        **{name: hand(name) for name in spec.make},
    }
    for _ in range(warmups):  # imports, caches, the first TLS session
        for runner in runners.values():
            runner()
    for values in spec.samples.values():
        for series in values.values():
            series.clear()
    # One loop per implementation at a time, in a rotating order, each after a gc.collect()
    # (untimed): neighbours in time see the same machine, so their ratios can be paired.
    interleave(runners, loops * rounds)


@contextlib.contextmanager
def _database_servers() -> Iterator[dict[str, str | None]]:
    """redis and PostgreSQL from ``tests/servers.py``, or ``None`` each where it cannot start."""
    import os

    import pytest

    found: dict[str, str | None] = {"redis": None, "postgres": None}
    with contextlib.ExitStack() as stack:
        try:
            from tests.servers import private_postgres, private_redis
        except ImportError:
            yield found
            return
        for kind, env, start in (
            ("redis", "RESOURCELOOP_TEST_REDIS_URL", private_redis),
            ("postgres", "RESOURCELOOP_TEST_POSTGRES_DSN", private_postgres),
        ):
            given = os.environ.get(env)
            if given:
                found[kind] = given
                continue
            try:
                found[kind] = stack.enter_context(start())
            except (pytest.skip.Exception, pytest.fail.Exception, OSError) as exc:
                print(f"\n  {kind} unavailable: {exc}", flush=True)
        yield found


def case_clients(settings: Settings, data: dict[str, Any]) -> list[Row]:
    """Every contrib client, template against hand-kept; write ``clients.md``."""
    # Quick (CI): each client still runs every way, once; its ratios are not for quoting.
    loops = 1 if settings.quick else 15
    rounds = 1 if settings.quick else 5
    warmups = 1 if settings.quick else 3
    specs: list[Spec] = []
    env = environment()
    with tempfile.TemporaryDirectory(prefix="resourceloop-bench-clients-") as tmp:
        cert, key, maker = _self_signed(Path(tmp))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        client_ssl = ssl.create_default_context(cafile=str(cert))
        with (
            _http_server(None) as http,
            _http_server(server_ssl) as https,
            _database_servers() as databases,
        ):
            specs.append(_bare_spec())
            specs += _http_specs(http, None, "HTTP")
            specs += _http_specs(https, client_ssl, "HTTPS")
            if databases["redis"]:
                specs.append(_redis_spec(databases["redis"]))
            if databases["postgres"]:
                specs += _postgres_specs(databases["postgres"])
            for spec in specs:
                print(f"\n  {spec.client} {spec.transport} ...", end=" ", flush=True)
                _measure(spec, loops, rounds, warmups)
    results = _results(specs)
    table = markdown(
        results,
        env=env,
        loops=loops,
        rounds=rounds,
        warmups=warmups,
        quick=settings.quick,
        cert=maker,
    )
    data["clients"] = {"loops": loops, "rounds": rounds, "results": results, "markdown": table}
    print()
    print(table)
    return []


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _results(specs: list[Spec]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        row: dict[str, Any] = {
            "client": spec.client,
            "transport": spec.transport,
            "note": spec.note,
        }
        for name, series in spec.samples.items():
            row[name] = {
                "acquire_ms": _median_ms(series["acquire"]),
                "first_request_ms": _median_ms(series["first_request"]),
                "samples": len(series["acquire"]),
                "acquire_each_ms": [round(x * 1000, 4) for x in series["acquire"]],
                "first_request_each_ms": [round(x * 1000, 4) for x in series["first_request"]],
            }
        mine = spec.samples[TEMPLATE]
        row["paired"] = {
            name: {
                f"{key}_ms": statistics.median(
                    a / b for a, b in zip(mine[key], series[key], strict=True)
                )
                for key in ("acquire", "first_request")
            }
            for name, series in spec.samples.items()
            if name != TEMPLATE
        }
        rows.append(row)
    return rows


def _ratio(row: dict[str, Any], other: str, key: str) -> float | None:
    """The median of the template's time over ``other``'s, loop by loop (adjacent pairs)."""
    if other not in row["paired"]:
        return None
    return float(row["paired"][other][key])


def markdown(
    results: list[dict[str, Any]],
    *,
    env: dict[str, Any],
    loops: int,
    rounds: int,
    warmups: int,
    quick: bool,
    cert: str,
) -> str:
    lines = [
        "# First acquisition of each contrib client: template against hand-kept"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}; {env['python']}; {env['machine']}, {env['cpus']} CPUs (load "
        f"average at start {env['load_average']}); resourceloop {env['resourceloop']} "
        f"(commit {env['commit']}{', with uncommitted changes' if env['dirty'] else ''})",
        "- command: `python -m benchmarks --cases clients" + (" --quick`" if quick else "`"),
        "",
        f"Fresh event loops, {loops * rounds} per implementation, one implementation at a time "
        f"in a rotating order (after {warmups} warm-up loop{'s' * (warmups != 1)} each and a "
        "`gc.collect()` before every loop, both untimed); times are medians over all loops, "
        "ratios the median of the ratios of adjacent loops (the template's loop against the "
        "other's next to it). *acquire*: the first `await template.acquire()`, or a per-loop "
        "dict's get-or-create of the library's client with the same arguments (*hand-kept*), "
        "or with one SSL context made beforehand and passed in (*hand-kept, one context*). *+ "
        "request*: the acquisition plus the first request (it opens the connection; over "
        "HTTPS, the TLS handshake). HTTP clients against a local aiohttp server on 127.0.0.1, "
        f"HTTPS with a self-signed certificate (made with {cert}) that the client is given as "
        "`verify=`/`ssl=`; redis-server and PostgreSQL plain, on 127.0.0.1. Ratios: the "
        "template's time over the other's (lower is better).",
        "",
        "| client | transport | template acquire ms | hand-kept acquire ms | one-context acquire "
        "ms | acquire vs hand-kept | acquire vs one context | template + request ms | "
        "hand-kept + request ms | + request vs hand-kept | + request vs one context |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]

    def cell(value: float | None, fmt: str = "{:.3f}") -> str:
        return "" if value is None else fmt.format(value)

    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}x"

    for row in results:
        hand, shared = row.get(HAND), row.get(HAND_SHARED)
        lines.append(
            f"| {row['client']} | {row['transport']} | {row[TEMPLATE]['acquire_ms']:.3f} | "
            f"{cell(hand['acquire_ms'] if hand else None)} | "
            f"{cell(shared['acquire_ms'] if shared else None)} | "
            f"{ratio(_ratio(row, HAND, 'acquire_ms'))} | "
            f"{ratio(_ratio(row, HAND_SHARED, 'acquire_ms'))} | "
            f"{row[TEMPLATE]['first_request_ms']:.3f} | "
            f"{cell(hand['first_request_ms'] if hand else None)} | "
            f"{ratio(_ratio(row, HAND, 'first_request_ms'))} | "
            f"{ratio(_ratio(row, HAND_SHARED, 'first_request_ms'))} |"
        )
    lines += ["", "Targets (#19):", ""]
    by_key = {(r["client"], r["transport"]): r for r in results}
    for transport in ("HTTP", "HTTPS"):
        httpx_row, aiohttp_row = (
            by_key.get(("httpx", transport)),
            by_key.get(("aiohttp", transport)),
        )
        if httpx_row and aiohttp_row:
            value = httpx_row[TEMPLATE]["acquire_ms"] / aiohttp_row[TEMPLATE]["acquire_ms"]
            lines.append(
                f"- {transport}: httpx template's first acquisition / aiohttp template's: "
                f"{value:.2f}x (target <= 3x): {'holds' if value <= 3 else '**does not hold**'}"
            )
    for row in results:
        if row["client"] == BARE:
            continue  # resourceloop's own cost, for reading the rows: no target of its own
        for key, label in (("acquire_ms", "acquire"), ("first_request_ms", "acquire + request")):
            strictest = _ratio(row, HAND_SHARED, key) or _ratio(row, HAND, key)
            same = _ratio(row, HAND, key)
            if same is None:
                continue
            holds = same <= 1.5
            extra = (
                f"; against one context {strictest:.2f}x"
                if strictest is not None and strictest != same
                else ""
            )
            lines.append(
                f"- {row['client']} {row['transport']}, {label}: {same:.2f}x hand-kept (target "
                f"<= 1.5x): {'holds' if holds else '**does not hold**'}{extra}"
            )
    bare = by_key.get((BARE, "-"))
    missed = [
        r for r in results if r["client"] != BARE and (_ratio(r, HAND, "acquire_ms") or 0.0) > 1.5
    ]
    if bare is not None and missed:
        fixed = (bare[TEMPLATE]["acquire_ms"] - bare[HAND]["acquire_ms"]) * 1000
        extra = ", ".join(
            f"{r['client']} {r['transport']} "
            f"{(r[TEMPLATE]['acquire_ms'] - r[HAND]['acquire_ms']) * 1000:.0f} us"
            for r in missed
        )
        lines += [
            "",
            "Where an *acquire* target does not hold, the client is cheaper to create (about "
            "0.1 ms) than twice resourceloop's fixed cost of a first acquisition on a fresh loop "
            f"(first row: {fixed:.0f} us more than a dict of `object()`, for tracking the loop "
            f"and hooking its close). Template minus hand-kept there: {extra}. Counted with the "
            "first request, which is what an acquisition is for, those rows hold.",
        ]
    notes = [f"- {r['client']} {r['transport']}: {r['note']}" for r in results if r["note"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Every loop's times: `clients.json`, written by the same run.", ""]
    return "\n".join(lines)
