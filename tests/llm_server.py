"""Local stand-ins for the OpenAI and Anthropic APIs, for the SDK templates' tests.

One aiohttp server on 127.0.0.1 (plain or TLS) answers ``POST /v1/chat/completions`` (OpenAI's
chat completions) and ``POST /v1/messages`` (Anthropic's messages), plain JSON or streamed as
server-sent events, with the same reply every time (:data:`REPLY`). A request with the header
``x-test-hold: 1`` streams half of its events, then holds the rest until the server stops:
the stream a client abandons half-way. The server counts its own live connections
(:meth:`LLMServer.live_connections`); a client that goes away cancels its handler
(``handler_cancellation``), so a held stream does not keep its connection counted.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

__all__ = ["REPLY", "LLMServer", "running_llm_server"]

#: What every completion and message says, one word per streamed event.
REPLY = ["one", "two", "three", "four"]


class LLMServer:
    """Where the server listens, and its own view of its connections."""

    def __init__(self, port: int, tls: bool, loop: asyncio.AbstractEventLoop, runner: Any) -> None:
        self.port = port
        self.tls = tls
        self._loop = loop
        self._runner = runner
        self.requests = 0  # written on the server's loop only
        self.held = 0  # streams that reached their hold, written on the server's loop only

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def live_connections(self) -> int:
        """How many connections the server holds open right now, read on its own loop."""

        async def count() -> int:
            server = self._runner.server
            return 0 if server is None else len(server.connections)

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(30)


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _openai_events(model: str) -> list[str]:
    events = [_openai_chunk(model, {"role": "assistant", "content": ""}, None)]
    events += [_openai_chunk(model, {"content": w + " "}, None) for w in REPLY[:-1]]
    events += [_openai_chunk(model, {"content": REPLY[-1]}, None)]
    events += [_openai_chunk(model, {}, "stop")]
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def _anthropic_events(model: str) -> list[str]:
    message: dict[str, Any] = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    words = [w + " " for w in REPLY[:-1]] + [REPLY[-1]]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
        for w in words
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(REPLY)},
        },
        {"type": "message_stop"},
    ]
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


def _app(box: list[LLMServer], hold: list[asyncio.Event]) -> web.Application:
    async def stream(request: web.Request, events: list[str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        held = request.headers.get("x-test-hold") == "1"
        for index, event in enumerate(events):
            if held and index == len(events) // 2:
                box[0].held += 1
                await hold[0].wait()  # until the server stops, or the client goes away
            await response.write(event.encode())
        await response.write_eof()
        return response

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        box[0].requests += 1
        body = await request.json()
        model = body.get("model", "test-model")
        if body.get("stream"):
            return await stream(request, _openai_events(model))
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(REPLY)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5},
            }
        )

    async def messages(request: web.Request) -> web.StreamResponse:
        box[0].requests += 1
        body = await request.json()
        model = body.get("model", "test-model")
        if body.get("stream"):
            return await stream(request, _anthropic_events(model))
        return web.json_response(
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": " ".join(REPLY)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 4},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    return app


@contextmanager
def running_llm_server(ssl_context: ssl.SSLContext | None = None) -> Iterator[LLMServer]:
    """Serve on an ephemeral 127.0.0.1 port from a daemon thread until the block ends."""
    box: list[LLMServer] = []
    hold: list[asyncio.Event] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(box, hold), handle_signals=False, handler_cancellation=True)

    async def start() -> None:
        hold.append(asyncio.Event())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        box.append(LLMServer(runner.addresses[0][1], ssl_context is not None, loop, runner))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="test-llm-server", daemon=True)
    thread.start()
    if not ready.wait(30):  # pragma: no cover - only when the server cannot start at all
        raise RuntimeError("the test LLM server did not start")
    try:
        yield box[0]
    finally:
        loop.call_soon_threadsafe(hold[0].set)  # held streams finish, so cleanup is quick
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
