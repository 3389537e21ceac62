"""Many OpenAI-compatible chat calls, each distinct request paid for once per deployment. No Dagster imports.

* one event loop per batch (per asset step); one aiohttp client session per call session, one
  keep-alive connection per call in flight; bodies are posted as wire JSON to
  ``{base_url}/chat/completions`` with the key as a bearer token, and replies are read as plain JSON
  (:mod:`.wire`), with no SDK layer in between: at 64 calls in flight, every millisecond of client
  work per call is a millisecond the replies queued behind it wait;
* before anything is sent: the call cache; then identical calls in flight in this process are
  merged (one request, every caller gets its reply); then the deployment's flight rules
  (:mod:`.gate`): the cache is consulted again when a call gets its slot, and a body in flight in
  another process is waited for, not sent;
* replies are streamed by default, so ``timeout_s`` bounds the silence between chunks, not the
  length of a reply: a slow reply is not abandoned and bought again. A timed-out attempt is retried
  with twice the timeout and counted as possibly billed;
* retries with exponential backoff and full jitter on 429, 5xx, timeouts, connection errors and
  garbage replies, honouring ``Retry-After``; a 429 also shrinks the deployment's window;
* every completed call goes to the store the moment it lands; failures are never stored;
* the API key is held only by the client object; error text is scrubbed of it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache

import aiohttp

from ..settings import CallsConfig, Endpoint, scrub
from . import flight
from .errors import MAX_RETRY_AFTER_S, POSSIBLY_BILLED, RETRYABLE, RateLimitInfo, StatusError, classify
from .gate import Gate
from .types import CallRequest, CallResult, CallStats
from .wire import StreamedReply, parse_reply, request_body


@lru_cache(maxsize=1)
def _tls_context():
    """One TLS context per process: building one (loading the CA store) costs ~20 ms, per client."""
    import ssl

    return ssl.create_default_context()


USER_AGENT = "duel-assets (aiohttp)"


def limits_of(cfg: CallsConfig) -> flight.Limits:
    return flight.Limits(concurrency=cfg.concurrency, rpm=float(cfg.requests_per_minute or 0),
                         tpm=float(cfg.tokens_per_minute or 0), adaptive=bool(getattr(cfg, "adaptive", True)))


class LLMCaller:
    def __init__(self, endpoint: Endpoint, calls: CallsConfig, cache, log: Callable[[str], None] | None = None,
                 progress: bool = False):
        self.endpoint = endpoint
        self.cfg = calls
        self.cache = cache  # a call store (SQLite or PostgreSQL)
        self.log = log or (lambda s: None)
        self.progress = progress
        self.secrets = [endpoint.api_key] if endpoint.api_key else []

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
            call.trace_into(stats)
        return list(results), stats

    @asynccontextmanager
    async def session(self, label: str = "llm", total: int = 0):
        """A :class:`CallSession`: calls made through it share one client and this process's side of
        the deployment's flight rules, whatever mix of roles runs at once in this event loop."""
        session = CallSession(self, label, total)
        try:
            yield session
        finally:
            await session.aclose()

    def client(self) -> aiohttp.ClientSession:
        """The HTTP client of one session (it belongs to that session's event loop): connections kept
        alive, one per call in flight (the gate bounds how many). Nothing is looked up per request:
        no netrc, no proxy variables (each would be a thread hop per call)."""
        https = self.endpoint.base_url.lower().startswith("https")
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=_tls_context() if https else False)
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        return aiohttp.ClientSession(connector=connector, headers=headers, trust_env=False,
                                     timeout=aiohttp.ClientTimeout(total=None))


class CallSession:
    """``await session(request, stats, cached=None)`` makes (or serves from the cache) one call;
    ``session.expect(n)`` announces more calls for the progress count."""

    def __init__(self, caller: LLMCaller, label: str, total: int):
        self.caller, self.label = caller, label
        self.cfg = caller.cfg
        self.client = caller.client()
        self.url = f"{caller.endpoint.base_url.rstrip('/')}/chat/completions"
        self.stream = bool(getattr(self.cfg, "stream", True))
        self.t0 = time.monotonic()
        self.trace: list[tuple[float, float]] = []
        self.gate = Gate(caller.cache, caller.endpoint.base_url, limits_of(self.cfg), on_window=self._window)
        self.flights: dict[str, asyncio.Future] = {}
        self.announced: tuple = ()
        self.done, self.total, self.failed = 0, total, 0
        self.bar = _progress_bar(total, label) if caller.progress else None

    def _window(self, window: float) -> None:
        self.trace.append((time.monotonic() - self.t0, window))

    def trace_into(self, stats: CallStats, points: int = 60) -> None:
        """The window over time (at most ``points`` samples) into ``stats``."""
        step = max(1, len(self.trace) // points)
        stats.window_trace = self.trace[::step] + ([self.trace[-1]] if self.trace and len(self.trace) % step != 1 else [])

    def expect(self, n: int) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    async def __call__(self, req: CallRequest, stats: CallStats, cached: dict | None = None) -> CallResult:
        key = req.key
        try:
            if cached is not None:  # from a batch lookup; otherwise the slot's claim looks (once, with the rest)
                stats.cache_hits += 1
                return CallResult.from_cache(key, cached)
            inflight = self.flights.get(key)
            if inflight is not None:  # the same body is on its way: share its reply
                stats.merged += 1
                r = await asyncio.shield(inflight)
                return dataclasses.replace(r, cached=r.ok, attempts=0)
            fut = asyncio.get_running_loop().create_future()
            self.flights[key] = fut
            try:
                r = await self._send(req, key, stats)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a merged waiter re-raises it, nobody else needs to
                raise
            finally:
                self.flights.pop(key, None)
            fut.set_result(r)
            return r
        finally:
            self._tick(stats)

    async def _send(self, req: CallRequest, key: str, stats: CallStats) -> CallResult:
        """One call over the wire: attempts within the retry budget, each holding a slot of the
        deployment's budget while (and only while) it is in flight."""
        cfg, gate = self.cfg, self.gate
        kind, detail, attempts, timeout = "client_error", "", 0, float(cfg.timeout_s)
        for attempt in range(cfg.retry_budget):
            stored = await gate.acquire(key, req.est_tokens)
            if stored is not None:  # completed: already, or by another process (or session) meanwhile
                if gate.waited_elsewhere(key):
                    stats.completed_elsewhere += 1
                else:
                    stats.cache_hits += 1
                return CallResult.from_cache(key, stored)
            attempts = attempt + 1
            stats.calls_made += 1
            suggested, headers = None, None
            try:
                parsed, headers = await self._post(req, key, timeout)
            except Exception as exc:
                gate.release(key)
                kind, suggested = classify(exc)
                detail = scrub(f"{type(exc).__name__}: {exc}", self.caller.secrets)[:500]
                if kind == "rate_limit":
                    stats.rate_limited += 1
                    gate.feedback(True, suggested, _limits(getattr(exc, "headers", None)))
            else:
                gate.complete(key, req.role, req.model, parsed)
                self._announce(_limits(headers))
                stats.completed += 1
                stats.add_tokens(req.model, parsed["prompt_tokens"], parsed["completion_tokens"], parsed["cached_tokens"])
                stats.usage_missing += int(parsed["usage_missing"])
                stats.length_finishes += int(parsed["finish_reason"] == "length")
                stats.empty_content += int(not parsed["content"] and not parsed["tool_calls"])
                return CallResult(key=key, ok=True, attempts=attempts, **parsed)
            if kind not in RETRYABLE or attempt == cfg.retry_budget - 1:
                break
            stats.retries += 1
            stats.retry_kinds[kind] += 1
            if kind in POSSIBLY_BILLED:
                stats.possibly_billed_retries += 1
            if kind == "timeout":  # the provider may still be working on it: give the next attempt longer
                timeout *= 2
            if suggested is not None:  # the server said how long: honour it (bounded for safety)
                delay = min(suggested, MAX_RETRY_AFTER_S)
            else:  # exponential backoff with full jitter
                delay = random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_base_s * (2 ** attempt)))
            await asyncio.sleep(delay)
        stats.failures[kind] += 1
        self.failed += 1
        return CallResult(key=key, ok=False, error_kind=kind, error=detail, attempts=attempts)

    async def _post(self, req: CallRequest, key: str, timeout: float) -> tuple[dict, object]:
        """(parsed reply, response headers). ``timeout`` bounds connecting and each silence while the
        reply is read (between streamed chunks), not the reply's length. A status >= 400 is a
        :class:`StatusError`. The content key doubles as a tracing header."""
        body = json.dumps(request_body(req, stream=self.stream), separators=(",", ":")).encode()
        limits = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        async with self.client.post(self.url, data=body, headers={"X-Duel-Call-Key": key}, timeout=limits) as raw:
            if raw.status >= 400:
                raise StatusError(raw.status, raw.headers, (await raw.read()).decode("utf-8", "replace"))
            if not self.stream or "text/event-stream" not in raw.headers.get("Content-Type", ""):
                return parse_reply(json.loads(await raw.read())), raw.headers  # answered whole
            acc = StreamedReply()
            async for data in raw.content.iter_any():  # bytes as they arrive (content-decoded)
                acc.feed(data)
            acc.close()
            return acc.result(), raw.headers

    def _announce(self, info: dict | None) -> None:
        """Pass the provider's announced limits on to the deployment when they change (or run out)."""
        if not info:
            return
        sig = (info.get("limit_requests"), info.get("limit_tokens"))
        if sig != self.announced or (info.get("remaining_requests") is not None and info["remaining_requests"] <= 0):
            self.announced = sig
            self.gate.feedback(False, None, info)

    def _tick(self, stats: CallStats) -> None:
        self.done += 1
        self.total = total = max(self.total, self.done)  # a judge's stricter retry is a call nobody announced
        if self.bar is not None:
            self.bar.total = total
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
        if self.done % max(1, total // 10) == 0 or self.done == total:
            self.caller.log(f"{self.label}: {self.done}/{total} calls done, {self.failed} failed")

    async def aclose(self) -> None:
        if self.bar is not None:  # the last state drawn, done / total: updates between redraws are not shown
            self.bar.refresh()
            self.bar.close()
        await self.gate.aclose()
        await self.client.close()


def _limits(headers) -> dict | None:
    info = RateLimitInfo.from_headers(headers)
    return dataclasses.asdict(info) if info else None


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=label, unit="call", file=sys.stderr)
