"""What went wrong with one attempt, and what the provider said about its limits."""
from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass

import aiohttp
import httpx2
import openai

from .wire import BrokenStream, Garbage

MAX_RETRY_AFTER_S = 600.0
RETRYABLE = ("rate_limit", "server_error", "timeout", "connection", "garbage", "broken_stream")
# kinds after which the provider may have finished (and billed) the request we gave up on
POSSIBLY_BILLED = ("timeout", "connection", "garbage", "broken_stream")


def retry_after_seconds(headers) -> float | None:
    if headers is None:
        return None
    raw = headers.get("retry-after-ms")
    if raw:
        try:
            return float(raw) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<u>ms|s|m|h)")


def duration_seconds(raw: str | None) -> float | None:
    """``x-ratelimit-reset-*`` values: ``"20ms"``, ``"1s"``, ``"6m0s"``, ``"1h2m3.5s"`` or plain seconds."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _int(raw) -> int | None:
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return None


@dataclass
class RateLimitInfo:
    """The provider's own account of its limits (``x-ratelimit-*``), when it sends one."""
    limit_requests: int | None = None  # per minute
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def from_headers(cls, headers) -> RateLimitInfo | None:
        if headers is None or headers.get("x-ratelimit-limit-requests") is None and headers.get("x-ratelimit-remaining-requests") is None \
                and headers.get("x-ratelimit-limit-tokens") is None:
            return None
        return cls(limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
                   limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
                   remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
                   remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
                   reset_requests_s=duration_seconds(headers.get("x-ratelimit-reset-requests")),
                   reset_tokens_s=duration_seconds(headers.get("x-ratelimit-reset-tokens")))


def json_body(text: str) -> object:
    """An error body as JSON, or None when it is not JSON."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def provider_message(text: str) -> str:
    """What an error body says, in the provider's words: ``error.message`` (OpenAI and most
    compatible servers), ``message`` or ``detail`` (a validation error's ``loc: msg`` list too);
    else the body itself, on one line."""
    data = json_body(text)
    if isinstance(data, dict):
        err = data.get("error")
        for found in ((err.get("message") if isinstance(err, dict) else err), data.get("message"), data.get("detail")):
            if isinstance(found, str) and found.strip():
                return " ".join(found.split())
        detail = data.get("detail")  # a validation error's list: [{"loc": ["body", "tools"], "msg": ...}]
        if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
            return "; ".join(f"{'.'.join(map(str, d.get('loc') or []))}: {d.get('msg')}" for d in detail)
    return " ".join(str(text).split())


class StatusError(Exception):
    """The endpoint answered with an HTTP status >= 400; ``message`` is what it said (its refusal)."""

    def __init__(self, status: int, headers, text: str):
        self.status, self.headers, self.text = status, headers, text
        self.message = provider_message(text)[:300]
        super().__init__(f"HTTP {status}: {self.message}")


class NoReply(Exception):
    """An attempt given up because the endpoint answered none of the session's requests in time."""


def _causes(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _transport_kind(exc: BaseException) -> str | None:
    """timeout or connection, from the first error of the socket layer in the chain: the SDK's and
    its HTTP client's wrappers name every broken connection (refused, reset, server gone) a connect
    timeout, so what happened is read from what they wrap; their own type only when nothing is."""
    for e in _causes(exc):
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):  # aiohttp's timeouts are these too
            return "timeout"
        if isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
            return "connection"
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return "timeout"
    if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
        return "connection"
    return None


def classify(exc: BaseException) -> tuple[str, float | None]:
    """(kind, server-suggested delay) of an exception from one attempt. A transport error is a
    timeout when the socket went silent (connecting or reading), else the connection broke
    (refused, reset); a streamed reply cut before its end is a ``broken_stream``."""
    if isinstance(exc, StatusError):
        if exc.status == 429:
            return "rate_limit", retry_after_seconds(exc.headers)
        if exc.status >= 500 or exc.status == 408:
            return "server_error", retry_after_seconds(exc.headers)
        return f"http_{exc.status}", None
    if isinstance(exc, NoReply):
        return "no_reply", None
    if isinstance(exc, BrokenStream):
        return "broken_stream", None
    if isinstance(exc, (Garbage, json.JSONDecodeError, UnicodeDecodeError)):
        return "garbage", None
    return _transport_kind(exc) or "client_error", None
