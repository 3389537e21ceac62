"""Many OpenAI-compatible chat calls, each distinct request paid for once per deployment.

* one event loop per batch (per asset step); one ``openai`` client per call session on the SDK's
  aiohttp transport, one keep-alive connection per call in flight (:mod:`.transport`);
* a call's identity is its content and its endpoint (:mod:`.scope`): a reply is reused only for
  the endpoint that gave it, and replies the offline stand-in gave are dropped from the store when
  something else answers at its address;
* before anything is sent: the call cache; then identical calls in flight in this process are
  merged (one request, every caller gets its reply); then the deployment's flight rules
  (:mod:`.gate`): the cache is consulted again when a call gets its slot, and a body in flight in
  another process is waited for, not sent (:mod:`.session`);
* retries, timeouts, the call's deadline and the switches the endpoint refuses follow
  :mod:`.retry` and :mod:`.downgrades` (:mod:`.sending`);
* every completed call goes to the store the moment it lands; failures are never stored;
* the API key is held only by the client object; error text is scrubbed of it.
"""
from __future__ import annotations

import asyncio
import base64
import gc
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from ..settings import CallsConfig, Endpoint
from .scope import EndpointCalls
from .types import CallRequest, CallResult, CallStats

GC_YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation, during a batch

class LLMCaller:
    def __init__(self, endpoint: Endpoint, calls: CallsConfig, cache, log: Callable[[str], None] | None = None,
                 progress: bool = False, prices: Mapping | None = None):
        self.endpoint = endpoint
        self.prices = prices or {}  # [prices]: what calls cost, counted against calls.max_usd (:mod:`.budget`)
        self.endpoint_id = endpoint.id  # how the store records it: never a secret
        self.cfg = calls
        self.store = cache  # the call store (SQLite or PostgreSQL), every endpoint
        self.cache = EndpointCalls(cache, self.endpoint_id)  # this endpoint's calls, by request
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
        the loop for tens of ms at a time, which at 64 calls in flight costs whole latency rounds.
        The youngest generation is collected every :data:`GC_YOUNG_THRESHOLD` allocations instead
        of 700: each request makes a few hundred short-lived objects (the SDK's request, response
        and header objects), and each collection is a stall every reply in flight waits out."""
        threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(threshold[0], GC_YOUNG_THRESHOLD), *threshold[1:])
        try:
            return asyncio.run(coro)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()

    async def run_async(self, requests: Sequence[CallRequest], label: str = "llm") -> tuple[list[CallResult], CallStats]:
        async with self.session(label, total=len(requests)) as call:
            stats = CallStats(requested=len(requests))
            t0 = time.monotonic()
            hits = self.cache.get_many(list(requests))  # one query for the whole batch
            results = await asyncio.gather(*(call(r, stats, hits.get(r.key)) for r in requests))
            stats.wall_s = time.monotonic() - t0
            call.trace_into(stats)
        call.raise_over_budget()
        return list(results), stats

    @asynccontextmanager
    async def session(self, label: str = "llm", total: int = 0):
        """A :class:`.session.CallSession`: calls made through it share one client and this
        process's side of the deployment's flight rules, whatever mix of roles runs at once in this
        event loop. What the endpoint is known to refuse is read from the store as it starts."""
        from .session import CallSession

        learnt = getattr(self.store, "downgrades", None)
        if learnt is not None:
            self.cache.downgrades.update(learnt(self.endpoint_id))
        session = CallSession(self, label, total)
        try:
            session.count_spend()
            await session.drop_stale_standin_replies()
            yield session
        finally:
            await session.aclose()
