"""The LLM call layer: many OpenAI-compatible chat calls per partition, paid for once. No Dagster imports.

* one event loop per batch (per asset step), calls bounded by a semaphore and an optional
  requests/tokens-per-minute pacer;
* one ``openai`` client per batch on the SDK's aiohttp transport, one keep-alive connection per
  call in flight; bodies go out as wire JSON through the SDK's own ``post`` (base URL, auth,
  headers, status errors) and replies are read as plain JSON, so provider fields survive;
* retries with exponential backoff and full jitter on 429, 5xx, timeouts, connection errors and
  garbage replies, honouring ``Retry-After``; at most ``retry_budget`` attempts per call;
* every completed call goes to the :class:`CallCache` the moment it lands; a cached key is never
  sent again. Failures are returned with their kind and never cached;
* provider quirks: ``reasoning_content`` / ``reasoning`` fields and ``<think>`` blocks are kept
  apart from the answer; missing ``usage``, empty content and ``finish_reason == "length"`` are
  recorded;
* the API key is held only by the client object; error text is scrubbed of it.
"""
from __future__ import annotations

import asyncio
import email.utils
from contextlib import asynccontextmanager
import gc
import json
import os
import random
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable, Sequence

import aiohttp  # the SDK's aiohttp transport (``openai[aiohttp]``)
import httpx2
import openai
import httpcore2  # noqa: F401 - the SDK loads it lazily on first use (~30 ms): pay that at import, not mid-batch

from .call_cache import CallCache, call_key
from .protocol import split_reasoning
from .settings import CallsConfig, ConfigError, Endpoint, scrub

MAX_RETRY_AFTER_S = 600.0
RETRYABLE = ("rate_limit", "server_error", "timeout", "connection", "garbage")


@dataclass
class CallRequest:
    role: str  # king | challenger | judge
    model: str
    messages: list[dict]
    params: dict = field(default_factory=dict)  # temperature, max_tokens, ...
    tools: list[dict] | None = None
    sample_index: int = 0
    tag: str = ""  # caller's id (turn id, judge, order) - not part of the key

    @cached_property
    def key(self) -> str:
        """Content address of the call (computed once: requests are not mutated after creation)."""
        return call_key(role=self.role, model=self.model, messages=self.messages, tools=self.tools,
                        params=self.params, sample_index=self.sample_index)


@dataclass
class CallResult:
    key: str
    ok: bool
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: bool = False
    served_model: str | None = None
    error_kind: str | None = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False

    @classmethod
    def from_cache(cls, key: str, data: dict) -> "CallResult":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "key": key, "ok": True, "cached": True, "attempts": 0})


@dataclass
class CallStats:
    requested: int = 0
    calls_made: int = 0  # HTTP requests sent, retries included
    completed: int = 0  # calls that completed in this batch (new spend)
    cache_hits: int = 0
    retries: int = 0
    failures: Counter = field(default_factory=Counter)  # final failures by kind
    retry_kinds: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: int = 0
    length_finishes: int = 0
    empty_content: int = 0
    wall_s: float = 0.0
    model_tokens: dict = field(default_factory=dict)  # model -> [prompt, completion] of new calls

    def add_tokens(self, model: str, prompt: int, completion: int) -> None:
        p, c = self.model_tokens.get(model, (0, 0))
        self.model_tokens[model] = (p + prompt, c + completion)
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def merge(self, other: "CallStats") -> "CallStats":
        for name in ("requested", "calls_made", "completed", "cache_hits", "retries", "usage_missing",
                     "length_finishes", "empty_content"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        self.retry_kinds.update(other.retry_kinds)
        for m, (p, c) in other.model_tokens.items():
            self.add_tokens(m, p, c)
        self.wall_s += other.wall_s
        return self

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def failure_rate(self) -> float:
        return self.failed / self.requested if self.requested else 0.0

    def cost(self, prices: dict[str, dict[str, float]]) -> float | None:
        """Estimated USD of the new calls, from prices per 1M tokens; None without prices."""
        if not prices:
            return None
        total = 0.0
        for model, (p, c) in self.model_tokens.items():
            pr = prices.get(model)
            if pr:
                total += p / 1e6 * pr.get("prompt", 0.0) + c / 1e6 * pr.get("completion", 0.0)
        return round(total, 6)

    def as_metadata(self) -> dict:
        return {
            "llm_requested": self.requested,
            "llm_calls_made": self.calls_made,
            "llm_completed": self.completed,
            "llm_cache_hits": self.cache_hits,
            "llm_retries": self.retries,
            "llm_failures": self.failed,
            "llm_failures_by_kind": dict(self.failures),
            "llm_retries_by_kind": dict(self.retry_kinds),
            "llm_prompt_tokens": self.prompt_tokens,
            "llm_completion_tokens": self.completion_tokens,
            "llm_usage_missing": self.usage_missing,
            "llm_length_finishes": self.length_finishes,
            "llm_empty_content": self.empty_content,
            "llm_wall_seconds": round(self.wall_s, 3),
        }


class _Garbage(Exception):
    pass


class _Pacer:
    """Spaces request starts to at most ``rpm`` requests and ``tpm`` (estimated prompt) tokens per
    minute; 0 disables a limit. Tokens are estimated as characters / 4 before the call."""

    def __init__(self, rpm: float, tpm: float = 0.0):
        self.req_interval = 60.0 / rpm if rpm and rpm > 0 else 0.0
        self.tok_interval = 60.0 / tpm if tpm and tpm > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self, est_tokens: int = 0) -> None:
        step = max(self.req_interval, self.tok_interval * est_tokens)
        if not step:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + step
        if delay > 0:
            await asyncio.sleep(delay)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one (loading the CA store) costs ~20 ms, per client."""
    return ssl.create_default_context()


def _retry_after_seconds(headers) -> float | None:
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


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _transport_kind(exc: BaseException) -> str:
    """timeout or connection, from the transport's own exception under the SDK's. The aiohttp
    transport reports every connection error (refused, reset, server gone) as a connect *timeout*;
    the metadata should say what happened."""
    for e in _causes(exc):
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return "timeout"
        if isinstance(e, (aiohttp.ClientConnectionError, ConnectionError)):
            return "connection"
    return "timeout" if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)) else "connection"


def classify(exc: BaseException) -> tuple[str, float | None]:
    """(kind, server-suggested delay) of an exception from one attempt."""
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError)):
        return _transport_kind(exc), None
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit", _retry_after_seconds(exc.response.headers)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500 or status == 408:
            return "server_error", _retry_after_seconds(exc.response.headers)
        return f"http_{status}", None
    if isinstance(exc, (_Garbage, openai.APIResponseValidationError, json.JSONDecodeError)):
        return "garbage", None
    return "client_error", None


def parse_reply(data) -> dict:
    """The fields of one ``chat.completion`` reply (wire JSON, already decoded) that a row keeps.

    Works on plain JSON rather than the SDK's response models: providers add fields of their own
    (``reasoning_content``, ``reasoning``) and building typed models for every reply costs CPU
    that, at many calls in flight, delays the replies queued behind it."""
    if not isinstance(data, dict):
        raise _Garbage("reply is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Garbage("reply has no choices")
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, dict):
        raise _Garbage("reply has no message")
    separate = msg.get("reasoning_content") or msg.get("reasoning") or ""
    if not isinstance(separate, str):
        separate = json.dumps(separate)
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    think, answer = split_reasoning(content if isinstance(content, str) else "")
    reasoning = "\n\n".join(p for p in (separate, think) if p) or None
    tool_calls = None
    raw_calls = msg.get("tool_calls")
    if raw_calls:
        if not isinstance(raw_calls, list):
            raise _Garbage("tool_calls is not a list")
        tool_calls = []
        for tc in raw_calls:
            fn = (tc or {}).get("function") or {}
            args = fn.get("arguments")
            tool_calls.append({"id": tc.get("id"), "type": "function",
                               "function": {"name": fn.get("name"),
                                            "arguments": args if isinstance(args, str) else json.dumps(args)}})
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else None
    return {
        "content": answer,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
        "finish_reason": choice.get("finish_reason"),
        "prompt_tokens": int(usage.get("prompt_tokens") or 0) if usage else 0,
        "completion_tokens": int(usage.get("completion_tokens") or 0) if usage else 0,
        "usage_missing": usage is None,
        "served_model": data.get("model"),
    }


def request_body(req: CallRequest) -> dict:
    """The ``/chat/completions`` JSON body. Messages, tools and sampling parameters are already in
    OpenAI wire format, so they are posted as they are: the SDK's typed ``create()`` would walk them
    through its recursive TypedDict transform and build typed reply models, CPU that at many calls in
    flight on a small machine delays every reply queued behind it."""
    body: dict = {"model": req.model, "messages": req.messages, **req.params}
    if req.tools:
        body["tools"] = req.tools
    return body


class LLMCaller:
    def __init__(self, endpoint: Endpoint, calls: CallsConfig, cache: CallCache,
                 log: Callable[[str], None] | None = None):
        self.endpoint = endpoint
        self.cfg = calls
        self.cache = cache
        self.log = log or (lambda s: None)
        self.secrets = [endpoint.api_key] if endpoint.api_key else []

    # -- public ------------------------------------------------------------------------------
    def run(self, requests: Sequence[CallRequest], label: str = "llm") -> tuple[list[CallResult], CallStats]:
        return self.run_coroutine(self.run_async(requests, label))

    def run_coroutine(self, coro):
        """Runs ``coro`` in a fresh event loop. Objects that exist before (Dagster, pandas, ...) are
        moved out of the collector's reach meanwhile: full collections over that heap otherwise stall
        the loop for tens of ms at a time, which at 64 calls in flight costs whole latency rounds."""
        gc.freeze()
        try:
            return asyncio.run(coro)
        finally:
            gc.unfreeze()

    async def run_async(self, requests: Sequence[CallRequest], label: str = "llm") -> tuple[list[CallResult], CallStats]:
        async with self.session(label, total=len(requests)) as call:
            stats = CallStats(requested=len(requests))
            t0 = time.monotonic()
            hits = self.cache.get_many([r.key for r in requests])  # one query for the whole batch
            results = await asyncio.gather(*(call(r, stats, hits.get(r.key)) for r in requests))
            stats.wall_s = time.monotonic() - t0
        return list(results), stats

    @asynccontextmanager
    async def session(self, label: str = "llm", total: int = 0):
        """A :class:`CallSession`: calls made through it share one client, one concurrency bound
        and one pacer, whatever mix of roles runs at once in this event loop."""
        session = CallSession(self, label, total)
        try:
            yield session
        finally:
            await session.aclose()

    def client(self) -> openai.AsyncOpenAI:
        """The client of one session (it belongs to that session's event loop).

        It rides on the SDK's aiohttp transport (``openai[aiohttp]``), which spends about a third
        less CPU per call than the default pool; CPU the single event loop saves is latency the
        replies queued behind it do not wait. One keep-alive connection per call in flight. Plain
        ``http://`` needs no certificate store."""
        https = self.endpoint.base_url.lower().startswith("https")
        limits = httpx2.Limits(max_connections=self.cfg.concurrency, max_keepalive_connections=self.cfg.concurrency)
        http = openai.DefaultAioHttpClient(verify=_tls_context() if https else False, limits=limits)
        return openai.AsyncOpenAI(base_url=self.endpoint.base_url, api_key=self.endpoint.api_key or "none",
                                  max_retries=0, timeout=self.cfg.timeout_s, http_client=http)

class CallSession:
    """``await session(request, stats, cached=None)`` makes (or serves from the cache) one call;
    ``session.expect(n)`` announces more calls for the progress count."""

    def __init__(self, caller: LLMCaller, label: str, total: int):
        self.caller, self.label = caller, label
        self.client = caller.client()
        self.sem = asyncio.Semaphore(caller.cfg.concurrency)
        self.pacer = _Pacer(caller.cfg.requests_per_minute, caller.cfg.tokens_per_minute)
        self.done, self.total, self.failed = 0, total, 0
        self.bar = _progress_bar(total, label)

    def expect(self, n: int) -> None:
        self.total += n
        if self.bar is None:  # sessions opened with total=0 announce their calls here
            self.bar = _progress_bar(self.total, self.label)
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    async def __call__(self, req: CallRequest, stats: CallStats, cached: dict | None = None) -> CallResult:
        key = req.key
        try:
            if cached is None:
                cached = self.caller.cache.get(key)
            if cached is not None:
                stats.cache_hits += 1
                return CallResult.from_cache(key, cached)
            return await self._send(req, key, stats)
        finally:
            self._tick()

    async def _send(self, req: CallRequest, key: str, stats: CallStats) -> CallResult:
        """One call over the wire: attempts within the retry budget, each under the concurrency bound."""
        cfg, cache = self.caller.cfg, self.caller.cache
        kind, detail, attempts = "client_error", "", 0
        for attempt in range(cfg.retry_budget):
            attempts = attempt + 1
            suggested = None
            async with self.sem:
                await self.pacer.wait(len(json.dumps(req.messages)) // 4 if self.pacer.tok_interval else 0)
                stats.calls_made += 1
                try:
                    # the SDK's own POST (auth, headers, base URL, status errors) with the raw reply:
                    # the content key doubles as an idempotency / tracing header
                    raw = await self.client.post("/chat/completions", cast_to=httpx2.Response, body=request_body(req),
                                            options={"headers": {"X-Duel-Call-Key": key}})
                    parsed = parse_reply(json.loads(raw.content))
                except Exception as exc:  # noqa: BLE001 - classified below, unknown kinds are final
                    kind, suggested = classify(exc)
                    detail = scrub(f"{type(exc).__name__}: {exc}", self.caller.secrets)[:500]
                else:
                    cache.put(key, req.role, req.model, parsed)
                    stats.completed += 1
                    stats.add_tokens(req.model, parsed["prompt_tokens"], parsed["completion_tokens"])
                    stats.usage_missing += int(parsed["usage_missing"])
                    stats.length_finishes += int(parsed["finish_reason"] == "length")
                    stats.empty_content += int(not parsed["content"] and not parsed["tool_calls"])
                    return CallResult(key=key, ok=True, attempts=attempts, **parsed)
            if kind not in RETRYABLE or attempt == cfg.retry_budget - 1:
                break
            stats.retries += 1
            stats.retry_kinds[kind] += 1
            if suggested is not None:  # the server said how long: honour it (bounded for safety)
                delay = min(suggested, MAX_RETRY_AFTER_S)
            else:  # exponential backoff with full jitter
                delay = random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_base_s * (2 ** attempt)))
            await asyncio.sleep(delay)
        stats.failures[kind] += 1
        self.failed += 1
        return CallResult(key=key, ok=False, error_kind=kind, error=detail, attempts=attempts)

    def _tick(self) -> None:
        self.done += 1
        total = max(self.total, self.done)
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
        if self.done % max(1, total // 10) == 0 or self.done == total:
            self.caller.log(f"{self.label}: {self.done}/{total} calls done")

    async def aclose(self) -> None:
        if self.bar is not None:
            self.bar.close()
        await self.client.close()


def _progress_bar(total: int, label: str):
    """A terminal progress bar when the CLI asked for one (DUEL_PROGRESS=1) and there is work."""
    if os.environ.get("DUEL_PROGRESS") != "1" or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="call", file=sys.stderr, leave=False)


def require_endpoint(endpoint: Endpoint | None) -> Endpoint:
    if endpoint is None:
        raise ConfigError(
            "no LLM endpoint configured: set LLM_BASE_URL and LLM_API_KEY (or CHUTES_*/OPENAI_*). "
            "For an offline try, start the stand-in with `duel-assets standin --port 8765` and set "
            "LLM_BASE_URL=http://127.0.0.1:8765/v1 - its replies are not from a model."
        )
    return endpoint
