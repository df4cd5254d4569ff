"""Recipe: an openai.AsyncOpenAI per event loop."""

from __future__ import annotations

from resourceloop.contrib.openai import async_openai_template

# Each client reads OPENAI_API_KEY (and OPENAI_BASE_URL, if set).
openai_clients = async_openai_template(name="openai", max_retries=2)


async def ask(question: str) -> str:
    client = await openai_clients.acquire()
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
    )
    return completion.choices[0].message.content or ""


async def ask_streamed(question: str) -> str:
    client = await openai_clients.acquire()
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        stream=True,
    )
    async with stream:  # closes the response even if we stop early
        parts = [c.choices[0].delta.content or "" async for c in stream]
    return "".join(parts)
