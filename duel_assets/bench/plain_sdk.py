"""The yardstick of the call layer: what a competent user writes with the ``openai`` package.

One ``AsyncOpenAI`` client on the SDK's aiohttp transport (as the SDK recommends for many requests
at once), an ``asyncio.Semaphore`` of the same concurrency, and the same request bodies the
project sent (captured at the stand-in), in the same order of work: every answer first, then every
judgement. Replies are streamed as the bodies ask and read chunk by chunk, the SDK's way. No call
store, no retries of its own beyond the SDK's defaults (the stand-in sends no fault here).
"""
from __future__ import annotations

import asyncio
import inspect
import time


def _kwargs(create, body: dict) -> dict:
    """``body`` as ``create``'s keyword arguments; fields it does not name go in ``extra_body``."""
    named = set(inspect.signature(create).parameters)
    out = {k: v for k, v in body.items() if k in named}
    extra = {k: v for k, v in body.items() if k not in named}
    return {**out, "extra_body": extra} if extra else out


async def _replay(base_url: str, bodies: list[dict], concurrency: int) -> int:
    import openai

    from duel_assets.devtools.standin.replies import is_judge_request

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-key", http_client=openai.DefaultAioHttpClient())
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> str:
        async with sem:
            reply = await client.chat.completions.create(**_kwargs(client.chat.completions.create, body))
            if not body.get("stream"):
                return reply.choices[0].message.content or ""
            text = []
            async for chunk in reply:
                for choice in chunk.choices:
                    if choice.delta.content:
                        text.append(choice.delta.content)
            return "".join(text)

    try:
        answers = [b for b in bodies if not is_judge_request(b)]
        judgements = [b for b in bodies if is_judge_request(b)]
        done = await asyncio.gather(*(one(b) for b in answers))
        done += await asyncio.gather(*(one(b) for b in judgements))
    finally:
        await client.close()
    return sum(1 for d in done if d)


def replay(base_url: str, bodies: list[dict], concurrency: int) -> dict:
    """Wall time and client CPU of sending ``bodies`` the plain way, and how many came back with text."""
    t0, c0 = time.monotonic(), time.process_time()
    answered = asyncio.run(_replay(base_url, bodies, concurrency))
    return {"wall": time.monotonic() - t0, "cpu": time.process_time() - c0, "answered": answered}
