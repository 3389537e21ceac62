"""Many OpenAI-compatible chat calls, each distinct request paid for once per deployment.

* one event loop per batch (per asset step); one aiohttp client session per call session, one
  keep-alive connection per call in flight (:mod:`.transport`);
* a call's identity is its content and its endpoint (:mod:`.scope`): a reply is reused only for
  the endpoint that gave it, and replies the offline stand-in gave are dropped from the store when
  something else answers at its address;
* before anything is sent: the call cache; then identical calls in flight in this process are
  merged (one request, every caller gets its reply); then the deployment's flight rules
  (:mod:`.gate`): the cache is consulted again when a call gets its slot, and a body in flight in
  another process is waited for, not sent;
* retries, timeouts and the call's deadline follow :mod:`.retry`: a reply is never abandoned for a
  new request while it may still complete (streamed replies are read as long as chunks arrive,
  whole ones up to the deadline); a 429 also shrinks the deployment's window;
* an endpoint that answers none of a session's requests within a call's deadline fails the rest of
  the session's calls at once, with that reason;
* the first failure of each kind is logged with the provider's own message;
* every completed call goes to the store the moment it lands; failures are never stored;
* the API key is held only by the client object; error text is scrubbed of it.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager

from ..settings import CallsConfig, Endpoint, scrub
from . import flight, transport
from .errors import POSSIBLY_BILLED, RETRYABLE, NoReply, RateLimitInfo, classify
from .gate import Gate
from .retry import CallClock, backoff
from .scope import EndpointCalls
from .types import CallRequest, CallResult, CallStats

STANDIN_CHECK_S = 10.0  # the longest wait for the endpoint to say whether it is the stand-in


def limits_of(cfg: CallsConfig) -> flight.Limits:
    return flight.Limits(concurrency=cfg.concurrency, rpm=float(cfg.requests_per_minute or 0),
                         tpm=float(cfg.tokens_per_minute or 0), adaptive=cfg.adaptive)


class LLMCaller:
    def __init__(self, endpoint: Endpoint, calls: CallsConfig, cache, log: Callable[[str], None] | None = None,
                 progress: bool = False):
        self.endpoint = endpoint
        self.endpoint_id = endpoint.id  # how the store records it: never a secret
        self.cfg = calls
        self.store = cache  # the call store (SQLite or PostgreSQL), every endpoint
        self.cache = EndpointCalls(cache, self.endpoint_id)  # this endpoint's calls, by content key
        self.log = log or (lambda s: None)
        self.progress = progress
        # scrubbed from error text: the key, and the URL's credentials as given and as sent
        secrets = [endpoint.api_key, *(endpoint.basic_auth or ())]
        if endpoint.basic_auth:
            secrets.append(base64.b64encode(":".join(endpoint.basic_auth).encode()).decode())
        self.secrets = [s for s in secrets if len(s) >= 4]  # as settings.secret_values: shorter is no secret

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
            await session.drop_stale_standin_replies()
            yield session
        finally:
            await session.aclose()


class CallSession:
    """``await session(request, stats, cached=None)`` makes (or serves from the cache) one call;
    ``session.expect(n)`` announces more calls for the progress count."""

    def __init__(self, caller: LLMCaller, label: str, total: int):
        self.caller, self.label = caller, label
        self.cfg = caller.cfg
        self.client = transport.client(caller.endpoint)
        self.url = f"{caller.endpoint.base_url.rstrip('/')}/chat/completions"
        self.stream = self.cfg.stream
        self.t0 = time.monotonic()
        self.trace: list[tuple[float, float]] = []
        self.gate = Gate(caller.store, caller.endpoint_id, limits_of(self.cfg), on_window=self._window)
        self.flights: dict[str, asyncio.Future] = {}
        self.announced: tuple = ()
        self.done, self.total, self.failed = 0, total, 0
        self.bar = _progress_bar(total, label) if caller.progress else None
        self.heard = False  # the endpoint has answered something (any status) in this session
        self.silenced: asyncio.Future = asyncio.get_running_loop().create_future()  # set: it never will
        self.logged: set[str] = set()  # failure kinds already logged

    async def drop_stale_standin_replies(self) -> None:
        """Replies the offline stand-in gave at this address are served only while the stand-in
        still answers there: when something else does, they are removed from the store first."""
        store, endpoint = self.caller.store, self.caller.endpoint_id
        if not getattr(store, "has_standin_replies", None) or not store.has_standin_replies(endpoint):
            return
        now = await transport.is_standin(self.client, self.caller.endpoint.base_url,
                                         min(float(self.cfg.timeout_s), STANDIN_CHECK_S))
        if now is False:
            n = store.remove_standin_replies(endpoint)
            self.caller.log(f"{self.label}: {endpoint} is no longer the offline stand-in: its {n} stored stand-in "
                            "replies were removed (they are never served for another server)")

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
        key = self.caller.cache.key(req.key)
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
        """One call over the wire: attempts within the retry budget and the call's deadline, each
        holding a slot of the deployment's budget while (and only while) it is in flight."""
        cfg, gate = self.cfg, self.gate
        clock = CallClock(float(cfg.timeout_s), float(cfg.deadline_s))
        kind, detail, attempts = "client_error", "", 0
        for attempt in range(cfg.retry_budget):
            stored = await gate.acquire(key, req.est_tokens, retry=attempt > 0)
            if stored is not None:  # completed: already, or by another process (or session) meanwhile
                if gate.waited_elsewhere(key):
                    stats.completed_elsewhere += 1
                else:
                    stats.cache_hits += 1
                return CallResult.from_cache(key, stored)
            clock.start()
            if self.silenced.done() or clock.left() <= 0:
                gate.release(key)
                kind, detail = ("no_reply", self.silenced.result()) if self.silenced.done() else \
                    ("deadline", clock.late(attempts, kind, detail))
                break
            attempts = attempt + 1
            stats.calls_made += 1
            suggested, t0 = None, time.monotonic()
            try:
                parsed, headers = await self._attempt(req, key, *clock.attempt())
            except Exception as exc:
                gate.release(key)
                kind, suggested = classify(exc)
                self.heard |= kind.startswith("http_") or kind in ("rate_limit", "server_error", "garbage")
                detail = scrub(f"{type(exc).__name__}: {exc}", self.caller.secrets)[:500]
                self._log_first(kind, detail)
                if kind == "rate_limit":
                    stats.rate_limited += 1
                    gate.feedback(True, suggested, _limits(getattr(exc, "headers", None)))
            else:
                self.heard = True
                gate.complete(key, req.role, req.model, parsed)
                self._announce(_limits(headers))
                stats.completed += 1
                stats.slow_replies += int(not self.stream and time.monotonic() - t0 > cfg.timeout_s)
                stats.add_tokens(req.model, parsed["prompt_tokens"], parsed["completion_tokens"], parsed["cached_tokens"])
                stats.usage_missing += int(parsed["usage_missing"])
                stats.length_finishes += int(parsed["finish_reason"] == "length")
                stats.empty_content += int(not parsed["content"] and not parsed["tool_calls"])
                return CallResult(key=key, ok=True, attempts=attempts, **parsed)
            if kind == "timeout" and clock.left() <= 0.01:  # the attempt was given all the time left
                kind, detail = "deadline", clock.late(attempts, kind, detail)
                break
            if kind not in RETRYABLE or attempt == cfg.retry_budget - 1:
                break
            if kind == "timeout":  # the provider may still be working on it: give the next attempt longer
                clock.timed_out()
            delay = backoff(attempt, cfg.backoff_base_s, cfg.backoff_max_s, suggested)
            if delay >= clock.left():
                kind, detail = "deadline", clock.late(attempts, kind, detail)
                break
            stats.retries += 1
            stats.retry_kinds[kind] += 1
            if kind in POSSIBLY_BILLED:
                stats.possibly_billed_retries += 1
            await asyncio.sleep(delay)
        if kind == "deadline" and not self.heard and not self.silenced.done():
            self.silenced.set_result(f"{self.caller.endpoint_id} answered none of this step's requests ({detail})")
        stats.fail(kind, detail)
        self.failed += 1
        return CallResult(key=key, ok=False, error_kind=kind, error=detail, attempts=attempts)

    async def _attempt(self, req: CallRequest, key: str, timeout: float, whole_for: float) -> tuple[dict, object]:
        """One POST, given up early only when the session learns the endpoint answers nothing."""
        post = asyncio.ensure_future(transport.post(self.client, self.url, req, key, self.stream, timeout, whole_for))
        await asyncio.wait((post, self.silenced), return_when=asyncio.FIRST_COMPLETED)
        if not post.done():
            post.cancel()
            await asyncio.gather(post, return_exceptions=True)
            raise NoReply(self.silenced.result())
        return post.result()

    def _log_first(self, kind: str, detail: str) -> None:
        """The first failed attempt of each kind in the step's log, in the provider's words."""
        if kind not in self.logged:
            self.logged.add(kind)
            self.caller.log(f"{self.label}: first {kind} from {self.caller.endpoint_id}: {detail}")

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
        if not self.silenced.done():
            self.silenced.cancel()
        await self.gate.aclose()
        await self.client.close()


def _limits(headers) -> dict | None:
    info = RateLimitInfo.from_headers(headers)
    return dataclasses.asdict(info) if info else None


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=label, unit="call", file=sys.stderr)
