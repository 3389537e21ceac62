"""One call over the wire: its attempts, and what the endpoint's answers teach.

* attempts within ``calls.retry_budget`` and the call's deadline (:mod:`.retry`), each holding a
  slot of the deployment's budget while (and only while) it is in flight (:mod:`.gate`); a 429
  also shrinks the deployment's window;
* a refusal that names a switch of the body (:mod:`.downgrades`) is asked again at once with that
  switch one step down; this does not use up the retry budget, and a call makes at most one such
  step per switch value, so it never loops. The downgrade holds for the session at once and is
  stored (and counted, ``llm_downgrades``) once a call sent with it completes: a refusal that only
  happened to name a switch teaches nothing;
* a stream cut before its ``finish_reason`` is retried (never stored, never an empty answer); cut
  while other requests of this process were in flight, it halves the endpoint's concurrency (for
  the session at once; stored, so other processes start there, once a call completes under it);
* a reply without usage gets an estimate from its text, flagged ``usage_estimated``;
* an endpoint that answers none of a session's requests within a call's deadline fails the rest
  of the session's calls at once, with that reason; the first failure of each kind is logged in
  the provider's words, scrubbed of secrets.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from ..settings import scrub
from . import downgrades as dg
from . import transport
from .budget import Pricing
from .errors import POSSIBLY_BILLED, RETRYABLE, NoReply, RateLimitInfo, StatusError, classify
from .gate import Gate
from .retry import CallClock, backoff
from .types import CallRequest, CallResult, CallStats
from .wire import estimate_usage, request_body

MAX_DOWNGRADE_STEPS = 8  # more than every switch's steps together (stream, stream_options, 2 x response_format, ...)


class Sending:
    """The sending half of a :class:`.session.CallSession` (its attributes are the session's)."""

    caller: Any  # the LLMCaller: endpoint, store, secrets, log
    cfg: Any  # CallsConfig
    label: str
    client: transport.Client
    gate: Gate
    pricing: Pricing
    downgrades: dg.Downgrades
    pending: dict[tuple[str, str], tuple[str, str]]  # (model, switch) -> (value, refusal), unconfirmed
    stream: bool
    heard: bool
    silenced: asyncio.Future
    failed: int
    logged: set[str]
    announced: tuple
    flights: dict[str, asyncio.Future]

    async def _send(self, req: CallRequest, key: str, stats: CallStats, fut: asyncio.Future) -> CallResult:
        """One call (its merge future ``fut`` in the session's flights under ``key``)."""
        aliases: list[str] = []  # other identities it took on: it answers for them too while in flight
        try:
            return await self._attempts(req, key, stats, fut, aliases)
        finally:
            for alias in aliases:
                if self.flights.get(alias) is fut:
                    del self.flights[alias]

    async def _attempts(self, req: CallRequest, key: str, stats: CallStats, fut: asyncio.Future,
                        aliases: list[str]) -> CallResult:
        cfg, gate = self.cfg, self.gate
        clock = CallClock(float(cfg.timeout_s), float(cfg.deadline_s))
        kind, detail, attempts, budget, steps = "client_error", "", 0, 0, 0
        while budget < cfg.retry_budget:
            stored = await gate.acquire(key, req.est_tokens, retry=attempts > 0, usd=self.pricing.worst(req))
            if stored is not None:  # completed: already, or by another process (or session) meanwhile
                if gate.waited_elsewhere(key):
                    stats.completed_elsewhere += 1
                else:
                    stats.cache_hits += 1
                return CallResult.from_cache(key, stored)
            body, switches, now_key = self._body(req)
            if now_key != key:  # a switch that shapes the reply was turned down meanwhile: another call now
                gate.release(key)
                key = now_key
                other = self.flights.get(key)
                if other is not None and other is not fut:  # already on its way in this session: share its reply
                    stats.merged += 1
                    r = await asyncio.shield(other)
                    return dataclasses.replace(r, cached=r.ok, attempts=attempts)
                self._take_on(key, fut, aliases)
                continue
            clock.start()
            if self.silenced.done() or clock.left() <= 0:
                gate.release(key)
                kind, detail = ("no_reply", self.silenced.result()) if self.silenced.done() else \
                    ("deadline", clock.late(attempts, kind, detail))
                break
            attempts += 1
            budget += 1
            stats.calls_made += 1
            suggested, t0, bound = None, time.monotonic(), gate.limits.concurrency
            try:
                parsed, headers = await self._attempt(body, key, *clock.attempt())
            except Exception as exc:
                kind, suggested = classify(exc)
                self.heard |= kind.startswith("http_") or kind in ("rate_limit", "server_error", "garbage", "broken_stream")
                detail = scrub(f"{type(exc).__name__}: {exc}", self.caller.secrets)[:500]
                if kind == "broken_stream":
                    stats.broken_streams += 1
                    self._cut(detail, bound)
                refusal = exc if isinstance(exc, StatusError) and dg.is_refusal(exc.status, exc.text) else None
                # learnt before the slot is given back: the requests it lets go are sent downgraded
                downgraded = refusal is not None and steps < MAX_DOWNGRADE_STEPS and self._refused(
                    req.model, refusal, body, dg.format_required(req.params))
                gate.release(key)
                if downgraded:
                    steps += 1
                    budget -= 1  # asked again at once, differently: not a retry of the same request
                    self._take_on(self.caller.cache.identity(req), fut, aliases)
                    continue
                if refusal is not None:
                    self._forget(req.model, switches)
                    if kind == "server_error":  # a validation error: the same request is refused again
                        kind = "http_500"
                self._log_first(kind, detail)
                if kind == "rate_limit":
                    stats.rate_limited += 1
                    gate.feedback(True, suggested, _limits(getattr(exc, "headers", None)))
            else:
                self.heard = True
                if parsed["usage_missing"]:
                    parsed = estimate_usage(req, parsed)
                parsed["reply_format"] = dg.reply_format(body)  # stored with the reply: how it was asked for
                gate.complete(key, req.role, req.model, parsed, self.pricing.paid(req.model, parsed))
                self._announce(_limits(headers))
                self._confirm(req.model, switches, stats)
                stats.completed += 1
                stats.slow_replies += int(not body.get("stream") and time.monotonic() - t0 > cfg.timeout_s)
                stats.add_tokens(req.model, parsed["prompt_tokens"], parsed["completion_tokens"], parsed["cached_tokens"])
                stats.usage_missing += int(parsed["usage_missing"])
                stats.length_finishes += int(parsed["finish_reason"] == "length")
                stats.empty_content += int(not parsed["content"] and not parsed["tool_calls"])
                return CallResult(key=key, ok=True, attempts=attempts, **parsed)
            if kind == "timeout" and clock.left() <= 0.01:  # the attempt was given all the time left
                kind, detail = "deadline", clock.late(attempts, kind, detail)
                break
            if kind not in RETRYABLE or budget >= cfg.retry_budget:
                break
            if kind == "timeout":  # the provider may still be working on it: give the next attempt longer
                clock.timed_out()
            delay = backoff(budget - 1, cfg.backoff_base_s, cfg.backoff_max_s, suggested)
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

    def _take_on(self, key: str, fut: asyncio.Future, aliases: list[str]) -> None:
        """This call answers for identity ``key`` too while in flight, from the moment it knows it
        (before its next await): the same request asked meanwhile waits for it instead of sending."""
        if key not in self.flights:
            self.flights[key] = fut
            aliases.append(key)

    def _body(self, req: CallRequest) -> tuple[dict, dict[str, str], str]:
        """(the body to send now, the downgrades it went with, the call's identity for it)."""
        body = request_body(req, stream=self.stream)
        switches = dg.for_request(self.downgrades.of(req.model), req.params)
        changed = dg.apply(body, switches)
        return body, switches, self.caller.cache.key(dg.identity_key(req.key, changed))

    async def _attempt(self, body: dict, key: str, timeout: float, whole_for: float) -> tuple[dict, object]:
        """One POST, given up early only when the session learns the endpoint answers nothing."""
        post = asyncio.ensure_future(transport.post(self.client, body, key, timeout, whole_for))
        await asyncio.wait((post, self.silenced), return_when=asyncio.FIRST_COMPLETED)
        if not post.done():
            post.cancel()
            await asyncio.gather(post, return_exceptions=True)
            raise NoReply(self.silenced.result())
        return post.result()

    def _refused(self, model: str, exc: StatusError, body: dict, format_required: bool = False) -> bool:
        """Turn down the switch a refusal names (for this session at once); False when it names none
        the body used, or only a required response format."""
        switch = next((s for s in dg.named_switches(exc.text) if dg.uses(body, s)), None)
        if switch is None:
            return False
        value = dg.next_value(switch, body)
        if switch == "response_format" and value == dg.OFF and format_required:
            return False
        if dg.further(switch, self.downgrades.of(model).get(switch), value):
            self.downgrades.set(model, switch, value)
            self.pending[(model, switch)] = (value, scrub(f"HTTP {exc.status}: {exc.message}", self.caller.secrets))
        return True

    def _forget(self, model: str, switches: dict[str, str]) -> None:
        """A call sent with unconfirmed downgrades was refused all the same: they taught nothing (the
        first refusal named a switch by chance); the session goes back to what it knew."""
        for switch, value in switches.items():
            if self.pending.get((model, switch), (None,))[0] == value:
                del self.pending[(model, switch)]
                self.downgrades.set(model, switch, None)

    def _confirm(self, model: str, switches: dict[str, str], stats: CallStats) -> None:
        """A call sent with ``switches`` completed: those still unconfirmed are stored, and counted
        by the one process that stores each first; so is a lowered concurrency (some stream got
        through: it was the crowd that was cut, not every stream)."""
        for (m, switch), (value, reason) in list(self.pending.items()):
            if (m == model and switches.get(switch) == value) or (m == dg.ANY_MODEL and switch == dg.CONCURRENCY):
                del self.pending[(m, switch)]
                self._learn(m, switch, value, reason, stats)
        if switches:
            stats.downgrades_in_effect.setdefault(model, {}).update(switches)
        if self.downgrades.concurrency:
            stats.downgrades_in_effect.setdefault(dg.ANY_MODEL, {})[dg.CONCURRENCY] = str(self.downgrades.concurrency)

    def _learn(self, model: str, switch: str, value: str, reason: str, stats: CallStats) -> None:
        store = self.caller.store
        if getattr(store, "downgrade", None) is None or store.downgrade(self.caller.endpoint_id, model, switch, value, reason):
            stats.downgrades[switch] += 1
            where = self.caller.endpoint_id
            if switch == dg.CONCURRENCY:
                said = f"{where} cut streams while others were in flight ({reason}); at most {value} request(s) go to it at once"
            else:
                said = f"{where} refused {switch} for {model} ({reason}); its calls go with {switch} = {value}"
            self.caller.log(f"{self.label}: {said} from now on (remembered in the call store)")

    def _cut(self, detail: str, bound: int) -> None:
        """A stream sent under the concurrency ``bound`` was cut: when other requests of this process
        were in flight, the endpoint cannot keep that many streams going, so the bound is halved
        (once per bound: the other streams cut in the same crowd were sent under it too). It is
        stored once a call completes under it."""
        lowered = dg.lowered_concurrency(self.gate.limits.concurrency, len(self.gate.held))
        if lowered is None or bound != self.gate.limits.concurrency:
            return
        self.gate.limits = dataclasses.replace(self.gate.limits, concurrency=lowered)
        self.downgrades.set(dg.ANY_MODEL, dg.CONCURRENCY, str(lowered))
        self.pending[(dg.ANY_MODEL, dg.CONCURRENCY)] = (str(lowered), f"a stream cut with {len(self.gate.held)} "
                                                        f"in flight: {detail[:200]}")

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


def _limits(headers) -> dict | None:
    info = RateLimitInfo.from_headers(headers)
    return dataclasses.asdict(info) if info else None
