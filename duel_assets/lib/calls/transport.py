"""One attempt over the wire, through the ``openai`` package: the client, the POST and how long it
may take.

One ``AsyncOpenAI`` client per call session on the SDK's aiohttp transport (``openai[aiohttp]``),
its own retries off: the call layer retries, paces and leases (:mod:`.retry`, :mod:`.gate`). A
request goes out through ``chat.completions.with_streaming_response.create`` (the SDK's base URL,
key, headers and status errors), so the response headers are read for the provider's limits. The
body, already in wire format (:mod:`.wire`), is handed to the SDK whole as its ``extra_body``: the
SDK's walk of its typed parameters over every message costs more CPU per call than all the rest
of it, and the body needs no conversion. The reply's bytes are read as they arrive and decoded once
(:class:`.wire.StreamedReply`), not into the SDK's typed models (providers add fields of their own).
"""
from __future__ import annotations

import asyncio
import base64
import json
from functools import lru_cache

import httpx2
import openai

from ..settings import Endpoint
from .errors import StatusError, classify
from .wire import STANDIN_FINGERPRINT, BrokenStream, Garbage, StreamedReply, parse_reply

SPARE_CONNECTIONS = 8  # beyond the concurrency bound: the stand-in check, a connection still closing


@lru_cache(maxsize=1)
def _tls_context():
    """One TLS context per process: building one (loading the CA store) costs ~20 ms, per client."""
    import ssl

    return ssl.create_default_context()


class Client:
    """The ``AsyncOpenAI`` client of one call session (it belongs to that session's event loop) and
    the headers each of its requests adds (the endpoint's extra ones among them): connections kept
    alive, one per call in flight (the gate bounds how many). Nothing comes from the environment: no
    proxy variables, and none of the SDK's own (``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``) is sent to the endpoint. Without a key, the base
    URL's user info is sent as basic auth, or no ``Authorization`` at all (the SDK asks for that to
    be said per request)."""

    def __init__(self, endpoint: Endpoint, concurrency: int):
        https = endpoint.base_url.lower().startswith("https")
        pool = concurrency + SPARE_CONNECTIONS
        http = openai.DefaultAioHttpClient(verify=_tls_context() if https else False, trust_env=False,
                                           limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool))
        self.headers: dict = {}
        defaults: dict = {**dict(endpoint.headers), "OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}
        if not endpoint.api_key:
            user = endpoint.basic_auth
            if user:
                defaults["Authorization"] = f"Basic {base64.b64encode(':'.join(user).encode()).decode()}"
            else:
                self.headers["Authorization"] = openai.omit
        self.sdk = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "unused", max_retries=0,
                                      http_client=http, default_headers=defaults)

    async def close(self) -> None:
        await self.sdk.close()


async def post(client: Client, body: dict, key: str, timeout: float, whole_for: float) -> tuple[dict, object]:
    """(parsed reply, response headers) of one attempt with ``body`` (wire JSON). ``timeout``
    bounds connecting and, for a streamed reply, each silence between chunks (not the reply's
    length). A reply asked for whole is waited for up to ``whole_for`` seconds: once the body is
    sent the provider may finish and bill it, so it is not abandoned for a new request when it is
    merely slow. A status >= 400 is a :class:`.errors.StatusError`; a stream cut before its
    ``finish_reason`` a :class:`.wire.BrokenStream`. The call's identity doubles as a tracing header."""
    stream = bool(body.get("stream"))
    limits = httpx2.Timeout(timeout, read=timeout if stream else whole_for)
    try:
        async with asyncio.timeout(None if stream else whole_for), \
                client.sdk.chat.completions.with_streaming_response.create(
                    model=body["model"], messages=(), extra_body=body, extra_headers={**client.headers, "X-Duel-Call-Key": key},
                    timeout=limits) as raw:
            kind = raw.headers.get("content-type", "")
            if not stream or "text/event-stream" not in kind:
                return _whole(await raw.read(), kind), raw.headers  # answered whole
            return await _read_stream(raw), raw.headers
    except openai.APIStatusError as exc:  # the SDK read the refusal: keep its status, headers and words
        raise StatusError(exc.status_code, exc.response.headers, exc.response.text) from None


def _whole(data: bytes, content_type: str) -> dict:
    try:
        return parse_reply(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = " ".join(data[:120].decode("utf-8", "replace").split())
        raise Garbage(f"a 200 reply that is not JSON ({content_type or 'no content type'}): {text!r}") from None


async def _read_stream(raw) -> dict:
    acc = StreamedReply()
    try:
        async for data in raw.iter_bytes():  # bytes as they arrive (content-decoded)
            acc.feed(data)
    except Exception as exc:
        if classify(exc)[0] != "connection":  # a silence is a timeout, whatever was read
            raise
        if acc.finish_reason is None:
            raise BrokenStream(f"connection closed mid-stream after {acc.events} events: "
                               f"{type(exc).__name__}: {exc}") from exc
        # closed after the reply's end (its finish_reason), before [DONE] or a usage chunk: complete
    acc.close()
    return acc.result()


async def is_standin(client: Client, timeout: float) -> bool | None:
    """Whether the offline stand-in answers at the client's base URL now (``GET /models`` names it,
    or its ``X-Duel-Standin`` header is set); None when nothing answers there (the question stays open)."""
    try:
        raw = await client.sdk.models.with_raw_response.list(timeout=timeout, extra_headers=client.headers)
    except openai.APIStatusError as exc:
        return bool(exc.response.headers.get("X-Duel-Standin"))
    except (openai.APIConnectionError, TimeoutError, OSError):
        return None
    if raw.headers.get("X-Duel-Standin"):
        return True
    try:
        data = json.loads(raw.http_response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    models = data.get("data") if isinstance(data, dict) else None
    return isinstance(models, list) and any(isinstance(m, dict) and m.get("owned_by") == STANDIN_FINGERPRINT for m in models)
