"""Recipe: any SDK that takes an httpx client, one per event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx

from resourceloop import ResourceTemplate
from resourceloop.contrib.httpx import async_client_template

SDK = TypeVar("SDK")

# One httpx.AsyncClient per loop, all on one SSL context: closed on
# its loop, or its sockets closed for real once the loop is gone.
http_clients = async_client_template(name="sdk-http", timeout=60.0)


def sdk_template(
    make: Callable[[httpx.AsyncClient], SDK], *, name: str
) -> ResourceTemplate[SDK]:
    """One SDK object per loop, made by ``make`` on its httpx client."""

    async def acquire() -> SDK:
        return make(await http_clients.acquire())

    async def release(sdk: SDK) -> None:
        pass  # its httpx client is http_clients', closed on this loop

    return ResourceTemplate(acquire, release, name=name)


# With pydantic-ai, for example (its providers take http_client=):
#
#   from pydantic_ai import Agent
#   from pydantic_ai.models.openai import OpenAIChatModel
#   from pydantic_ai.providers.openai import OpenAIProvider
#
#   providers = sdk_template(
#       lambda http: OpenAIProvider(http_client=http), name="pydantic-ai"
#   )
#
#   async def run(prompt: str) -> str:
#       provider = await providers.acquire()
#       model = OpenAIChatModel("gpt-4o-mini", provider=provider)
#       return (await Agent(model).run(prompt)).output
