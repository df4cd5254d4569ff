"""Recipe: an anthropic.AsyncAnthropic per event loop."""

from __future__ import annotations

from resourceloop.contrib.anthropic import async_anthropic_template

# Each client reads ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL, if set).
claude = async_anthropic_template(name="anthropic", max_retries=2)


async def ask(question: str) -> str:
    client = await claude.acquire()
    message = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": question}],
    )
    return "".join(b.text for b in message.content if b.type == "text")


async def ask_streamed(question: str) -> str:
    client = await claude.acquire()
    stream = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": question}],
        stream=True,
    )
    async with stream:  # closes the response even if we stop early
        parts = [
            event.delta.text
            async for event in stream
            if event.type == "content_block_delta"
            and event.delta.type == "text_delta"
        ]
    return "".join(parts)
