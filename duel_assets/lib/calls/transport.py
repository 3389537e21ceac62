"""One attempt over the wire: the HTTP client, the POST and how long it may take.

Bodies are posted as wire JSON to ``{base_url}/chat/completions`` with the key as a bearer token
(or the base URL's user info as basic auth when there is no key) and replies are read as plain JSON
(:mod:`.wire`), with no SDK layer in between: at 64 calls in flight, every millisecond of client
work per call is a millisecond the replies queued behind it wait.
"""
from __future__ import annotations

import json
from functools import lru_cache

import aiohttp

from ..settings import Endpoint
from .errors import StatusError
from .types import CallRequest
from .wire import STANDIN_FINGERPRINT, StreamedReply, parse_reply, request_body

USER_AGENT = "duel-assets (aiohttp)"


@lru_cache(maxsize=1)
def _tls_context():
    """One TLS context per process: building one (loading the CA store) costs ~20 ms, per client."""
    import ssl

    return ssl.create_default_context()


def client(endpoint: Endpoint) -> aiohttp.ClientSession:
    """The HTTP client of one call session (it belongs to that session's event loop): connections
    kept alive, one per call in flight (the gate bounds how many). Nothing is looked up per request:
    no netrc, no proxy variables (each would be a thread hop per call)."""
    https = endpoint.base_url.lower().startswith("https")
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=_tls_context() if https else False)
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    auth = None
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    elif endpoint.basic_auth:
        auth = aiohttp.BasicAuth(*endpoint.basic_auth)
    return aiohttp.ClientSession(connector=connector, headers=headers, trust_env=False, auth=auth,
                                 timeout=aiohttp.ClientTimeout(total=None))


async def post(http: aiohttp.ClientSession, url: str, req: CallRequest, key: str, stream: bool,
               timeout: float, whole_for: float) -> tuple[dict, object]:
    """(parsed reply, response headers) of one attempt. ``timeout`` bounds connecting and, for a
    streamed reply, each silence between chunks (not the reply's length). A reply asked for whole is
    waited for up to ``whole_for`` seconds: once the body is sent the provider may finish and bill
    it, so it is not abandoned for a new request when it is merely slow. A status >= 400 is a
    :class:`StatusError`. The call's identity doubles as a tracing header."""
    body = json.dumps(request_body(req, stream=stream), separators=(",", ":")).encode()
    read = timeout if stream else whole_for
    limits = aiohttp.ClientTimeout(total=None if stream else whole_for, sock_connect=timeout, sock_read=read)
    async with http.post(url, data=body, headers={"X-Duel-Call-Key": key}, timeout=limits) as raw:
        if raw.status >= 400:
            raise StatusError(raw.status, raw.headers, (await raw.read()).decode("utf-8", "replace"))
        if not stream or "text/event-stream" not in raw.headers.get("Content-Type", ""):
            return parse_reply(json.loads(await raw.read())), raw.headers  # answered whole
        acc = StreamedReply()
        async for data in raw.content.iter_any():  # bytes as they arrive (content-decoded)
            acc.feed(data)
        acc.close()
        return acc.result(), raw.headers


async def is_standin(http: aiohttp.ClientSession, base_url: str, timeout: float) -> bool | None:
    """Whether the offline stand-in answers at ``base_url`` now (``GET /models`` names it, or its
    ``X-Duel-Standin`` header is set); None when nothing answers there (the question stays open)."""
    limits = aiohttp.ClientTimeout(total=timeout)
    try:
        async with http.get(f"{base_url.rstrip('/')}/models", timeout=limits) as raw:
            if raw.headers.get("X-Duel-Standin"):
                return True
            try:
                data = json.loads(await raw.read())
            except (json.JSONDecodeError, UnicodeDecodeError):
                return False
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    models = data.get("data") if isinstance(data, dict) else None
    return isinstance(models, list) and any(isinstance(m, dict) and m.get("owned_by") == STANDIN_FINGERPRINT for m in models)
