"""The deployment's flight rules as plain data: who may send what, and when.

A store (SQLite on one machine, PostgreSQL for many workers) keeps one lease per request in flight
anywhere in the deployment and one budget row per endpoint. :func:`decide` is the rule both stores
apply inside one transaction, so that

* a request body in flight in one process is never sent by another (the other waits for its reply);
* the number of requests in flight to an endpoint never passes its concurrency bound (the bound of
  the process that asks), however many processes and runs share it;
* request starts are paced to the configured requests/tokens per minute and to the limits the
  provider announces in its ``x-ratelimit-*`` headers, for the whole deployment;
* a window (additive increase, multiplicative decrease) shrinks on 429 and grows back as calls succeed;
* an endpoint the deployment has never heard from gets one request first: its reply (and the limits
  its headers announce) sets the pace before a burst can run into a rate limit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PACE_MARGIN = 0.97  # pace a little under a limit the provider announced: its clock is not ours
BURST_S = 0.5  # after an idle spell, at most this much of the paced rate may start at once
DECREASE_GAP_S = 1.0  # one multiplicative decrease per congestion event, not one per 429 of a burst
UNBOUNDED = 1e9  # the window before any congestion: each caller's own concurrency bound applies


@dataclass
class Limits:
    concurrency: int
    rpm: float = 0.0  # configured requests per minute (0: none)
    tpm: float = 0.0  # configured tokens per minute (0: none)
    adaptive: bool = True
    max_usd: float = 0.0  # the deployment's hard budget (calls.max_usd; 0: none), see :mod:`.budget`


@dataclass
class Budget:
    """The shared state of one endpoint (one row)."""
    window: float = UNBOUNDED
    last_decrease: float = 0.0
    pause_until: float = 0.0
    next_req: float = 0.0
    next_tok: float = 0.0
    learned_rpm: float = 0.0
    learned_tpm: float = 0.0
    probed: float = 0.0  # 1 once any request to the endpoint has finished


@dataclass
class Wanted:
    key: str
    tokens: int = 0
    usd: float = 0.0  # its worst-case cost (:mod:`.budget`), held by its lease while in flight


@dataclass
class Decision:
    granted: list[str] = field(default_factory=list)
    wake_at: float | None = None  # when asking again can grant something (pacing or a pause)
    full: bool = False  # stopped at the concurrency bound: ask again when a slot frees
    shared: bool = False  # other holders have requests in flight (their slots free without telling us)
    refused: list[str] = field(default_factory=list)  # can never start within the budget
    spent: float = 0.0  # the deployment's paid cost, when a budget applies


def rates(limits: Limits, b: Budget) -> tuple[float, float]:
    """(requests, tokens) per minute to pace at: the tighter of configured and announced limits."""
    def tighter(cfg: float, learned: float) -> float:
        learned = learned * PACE_MARGIN if learned > 0 else 0.0
        both = [x for x in (cfg, learned) if x > 0]
        return min(both) if both else 0.0
    return tighter(limits.rpm, b.learned_rpm), tighter(limits.tpm, b.learned_tpm)


def capacity(limits: Limits, b: Budget) -> int:
    if not b.probed:
        return 1
    if not limits.adaptive:
        return limits.concurrency
    return max(1, min(limits.concurrency, math.floor(b.window + 1e-9)))


def decide(candidates: list[Wanted], limits: Limits, b: Budget, now: float, live: int, mine: int,
           contenders: int, others_waiting: bool) -> Decision:
    """Which of ``candidates`` (keys nobody else holds, not yet completed) may start now.

    ``live``: requests in flight to this endpoint in the whole deployment; ``mine``: those of the
    asking holder; ``contenders``: holders with requests in flight or waiting (the asker included).
    Mutates ``b`` (pacing clocks)."""
    out = Decision(shared=live > mine)
    if not candidates:
        return out
    if now < b.pause_until:
        out.wake_at = b.pause_until
        return out
    cap = capacity(limits, b)
    allowance = cap - live
    if others_waiting:  # share the bound: nobody keeps more than its part while others wait
        allowance = min(allowance, math.ceil(cap / max(1, contenders)) - mine)
    rpm, tpm = rates(limits, b)
    req_step = 60.0 / rpm if rpm else 0.0
    tok_step = 60.0 / tpm if tpm else 0.0
    if req_step:
        b.next_req = max(b.next_req, now - BURST_S)
    if tok_step:
        b.next_tok = max(b.next_tok, now - BURST_S)
    for w in candidates:
        if allowance <= 0:
            out.full = True
            break
        if (req_step and b.next_req > now) or (tok_step and b.next_tok > now):
            out.wake_at = max(b.next_req if req_step else 0.0, b.next_tok if tok_step else 0.0)
            break
        b.next_req += req_step
        b.next_tok += tok_step * max(1, w.tokens)
        out.granted.append(w.key)
        allowance -= 1
    return out


def on_finished(b: Budget) -> bool:
    """The endpoint has answered (anything): the one-request probe is over. True when ``b`` changed."""
    if b.probed:
        return False
    b.probed = 1.0
    return True


def on_success(limits: Limits, b: Budget) -> bool:
    """Additive increase: one more slot per window's worth of successes (up to this caller's
    bound). True when ``b`` changed."""
    changed = on_finished(b)
    if not limits.adaptive or b.window >= limits.concurrency:
        return changed
    b.window = min(float(limits.concurrency), b.window + 1.0 / max(b.window, 1.0))
    return True


def effective_window(limits: Limits, b: Budget) -> float:
    return min(float(limits.concurrency), b.window)


def on_rate_limited(limits: Limits, b: Budget, now: float, retry_after: float | None, live: int = 0) -> None:
    """Multiplicative decrease from the operating point (once per congestion event) and the
    provider's own pause."""
    on_finished(b)
    if limits.adaptive and now - b.last_decrease >= DECREASE_GAP_S:
        point = min(b.window, float(live or limits.concurrency), float(limits.concurrency))
        b.window = max(1.0, point / 2.0)
        b.last_decrease = now
    if retry_after:
        b.pause_until = max(b.pause_until, now + retry_after)


def on_headers(b: Budget, now: float, limit_requests: int | None, limit_tokens: int | None,
               remaining_requests: int | None, reset_requests_s: float | None) -> bool:
    """Learn the provider's announced per-minute limits; when it says no request is left, wait for
    the next one (a token of its bucket), not for the whole bucket to refill. True when ``b`` changed."""
    changed = on_finished(b)
    if limit_requests and limit_requests != b.learned_rpm:
        b.learned_rpm, changed = float(limit_requests), True
    if limit_tokens and limit_tokens != b.learned_tpm:
        b.learned_tpm, changed = float(limit_tokens), True
    if remaining_requests is not None and remaining_requests <= 0:
        wait = 60.0 / limit_requests if limit_requests else (reset_requests_s or 1.0)
        if reset_requests_s is not None:
            wait = min(wait, reset_requests_s)
        b.pause_until = max(b.pause_until, now + wait)
        changed = True
    return changed


def limits_of(cfg, learnt_concurrency: int | None = None) -> Limits:
    """The flight limits of ``cfg`` (``calls``); a concurrency learnt from the endpoint (it cuts streams when
    more are in flight) lowers the configured one."""
    concurrency = min(cfg.concurrency, learnt_concurrency or cfg.concurrency)
    return Limits(concurrency=concurrency, rpm=float(cfg.requests_per_minute or 0),
                         tpm=float(cfg.tokens_per_minute or 0), adaptive=cfg.adaptive,
                         max_usd=float(cfg.max_usd or 0.0))
