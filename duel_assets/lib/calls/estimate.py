"""What calls will cost before they are made: tokens and USD per role and model.

* prompt tokens: the rendered messages (and tools) as sent, about 4 characters a token;
* cached prompt tokens: the longest run of whole messages (after the tools) that an earlier request
  to the same model in the estimate began with, as a provider's prefix cache serves it;
* completion tokens: the call store's observed mean for the model and role (the model's over every
  role when that role has none yet), else ``max_tokens`` (an upper bound, said so);
* USD at ``[prices]``, online and at the batch prices (``batch_prompt``, ``batch_completion``,
  ``batch_cached_prompt``); a call already in the call store costs nothing, and what it was paid is
  shown beside.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .budget import price_of, usd
from .types import CallRequest

OBSERVED_LIMIT = 20_000  # the most recent stored calls the means are taken over


def prompt_tokens(req: CallRequest) -> int:
    """The request's prompt as sent (messages and tools as JSON), about 4 characters a token."""
    chars = len(json.dumps(req.messages, ensure_ascii=False)) + (len(json.dumps(req.tools)) if req.tools else 0)
    return chars // 4


class PrefixCache:
    """Prompt tokens a provider's prefix cache is expected to serve, per model: the longest run of
    whole messages (after the tools) seen at the start of an earlier request."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def cached(self, req: CallRequest) -> int:
        tools = json.dumps(req.tools, sort_keys=True) if req.tools else ""
        digest = hashlib.sha256(f"{req.model}\x1f{tools}".encode())
        chars = cached = len(tools)
        hit = False
        for m in req.messages:
            piece = json.dumps(m, sort_keys=True, ensure_ascii=False)
            digest.update(piece.encode())
            chars += len(piece)
            key = digest.hexdigest()
            if key in self.seen:
                cached, hit = chars, True
            else:
                self.seen.add(key)
        return cached // 4 if hit else 0


@dataclass
class Observed:
    """Completion tokens observed in the call store, per (model, role) and per model."""

    means: dict[tuple[str, str], float] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, Mapping]]) -> Observed:
        sums: dict[tuple[str, str], list[float]] = {}
        for model, role, resp in rows:
            for k in ((model, role), (model, "*")):
                s = sums.setdefault(k, [0.0, 0])
                s[0] += float(resp.get("completion_tokens") or 0)
                s[1] += 1
        return cls({k: v[0] / v[1] for k, v in sums.items()}, {k: int(v[1]) for k, v in sums.items()})

    def completion(self, req: CallRequest) -> tuple[float, str]:
        """(expected completion tokens, where the figure comes from)."""
        for k, what in (((req.model, req.role), "observed"), ((req.model, "*"), "observed (model)")):
            if k in self.means:
                return self.means[k], what
        return float(req.params.get("max_tokens") or 0), "max_tokens"


@dataclass
class Tally:
    """One role and model of an estimate."""

    role: str
    model: str
    calls: int = 0
    stored: int = 0  # already in the call store: free
    paid_usd: float = 0.0  # what the stored ones were paid (their recorded usage at [prices])
    skipped: float = 0.0  # judge calls the decided-bucket rule is expected to skip
    prompt: float = 0.0  # tokens of the calls to pay for
    cached: float = 0.0
    completion: float = 0.0
    completion_from: str = ""
    online_usd: float | None = 0.0
    batch_usd: float | None = 0.0

    @property
    def to_pay(self) -> float:
        return self.calls - self.stored - self.skipped

    def as_dict(self) -> dict:
        return {"role": self.role, "model": self.model, "calls": self.calls, "stored": self.stored,
                "to_pay": round(self.to_pay, 1), "expected_skipped": round(self.skipped, 1),
                "prompt_tokens": round(self.prompt), "cached_prompt_tokens": round(self.cached),
                "cached_prompt_share": round(self.cached / self.prompt, 3) if self.prompt else None,
                "completion_tokens": round(self.completion), "completion_from": self.completion_from,
                "online_usd": _r(self.online_usd), "batch_usd": _r(self.batch_usd), "stored_paid_usd": round(self.paid_usd, 6)}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _has_batch(price: dict) -> bool:
    return "batch_prompt" in price or "batch_completion" in price


class Estimate:
    """Add calls with :meth:`add` (each with its stored response, if any, and the share of it
    expected to be skipped); read the tallies by role and model."""

    def __init__(self, prices: Mapping | None, observed: Observed):
        self.prices = prices or {}
        self.observed = observed
        self.cache = PrefixCache()
        self.tallies: dict[tuple[str, str], Tally] = {}

    def add(self, req: CallRequest, stored: Mapping | None = None, skip_share: float = 0.0) -> None:
        t = self.tallies.setdefault((req.role, req.model), Tally(req.role, req.model))
        t.calls += 1
        price = price_of(self.prices, req.model)
        cached = self.cache.cached(req)  # a stored call warmed the provider's cache too
        if stored is not None:
            t.stored += 1
            if price is not None:
                t.paid_usd += usd(price, int(stored.get("prompt_tokens") or 0), int(stored.get("completion_tokens") or 0),
                                  int(stored.get("cached_tokens") or 0), batch=bool(stored.get("batch")))
            return
        share = 1.0 - skip_share
        t.skipped += skip_share
        p = prompt_tokens(req)
        c, source = self.observed.completion(req)
        if share:
            t.completion_from = source
        t.prompt += p * share
        t.cached += cached * share
        t.completion += c * share
        if price is None:
            t.online_usd = t.batch_usd = None
            return
        if t.online_usd is not None:
            t.online_usd += usd(price, p, round(c), cached) * share
        if t.batch_usd is not None:
            t.batch_usd = t.batch_usd + usd(price, p, round(c), cached, batch=True) * share if _has_batch(price) else None

    def rows(self) -> list[dict]:
        order = {"king": 0, "challenger": 1, "judge": 2}
        return [t.as_dict() for t in sorted(self.tallies.values(), key=lambda t: (order.get(t.role, 9), t.role, t.model))]

    def totals(self) -> dict:
        ts = list(self.tallies.values())

        def total(name: str) -> float | None:
            vals = [getattr(t, name) for t in ts]
            return None if any(v is None for v in vals) else round(sum(vals), 6)

        return {"calls": sum(t.calls for t in ts), "stored": sum(t.stored for t in ts),
                "to_pay": round(sum(t.to_pay for t in ts), 1), "expected_skipped": round(sum(t.skipped for t in ts), 1),
                "online_usd": total("online_usd"), "batch_usd": total("batch_usd"),
                "stored_paid_usd": round(sum(t.paid_usd for t in ts), 6),
                "unpriced_models": sorted({t.model for t in ts if price_of(self.prices, t.model) is None})}
