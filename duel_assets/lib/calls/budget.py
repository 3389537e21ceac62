"""The deployment's hard budget (``calls.max_usd``): what a call costs, at worst and as paid.

* paid: the usage of every completed call priced at ``[prices]`` when it lands, added up in the call
  store in the same transaction that stores the call (:mod:`.store_spend`), so every process and run
  of the deployment counts the same total;
* at worst: a request in flight may still cost its whole prompt at the uncached price (1.5 times the
  ~4-characters-a-token estimate, plus a few tokens per message) and ``max_tokens`` of completion;
  its lease in the store carries that figure;
* a request starts only while paid + the worst case of every request in flight + its own worst case
  stays within the cap; one that could never fit (paid + its worst case above the cap) is refused
  with :class:`BudgetReached`; one that could fit once requests in flight land waits for them.
"""
from __future__ import annotations

from collections.abc import Mapping

from .types import CallRequest

PROMPT_MARGIN = 1.5  # a prompt's tokens at worst, against the ~4-characters-a-token estimate
TOKENS_PER_MESSAGE = 8  # role and framing tokens a provider counts per message


class BudgetReached(Exception):
    """No more requests may start: the deployment's paid cost is at its cap."""

    def __init__(self, spent: float, cap: float):
        self.spent, self.cap = spent, cap
        super().__init__(f"budget reached: ${spent:.4f} of ${cap:.4f}; completed calls are kept; "
                         "raise calls.max_usd to go on")


def price_of(prices: Mapping | None, model: str) -> dict | None:
    """``[prices."model"]`` as a dict (USD per 1M tokens), or None."""
    pr = prices.get(model) if prices is not None and hasattr(prices, "get") else None
    if pr is None:
        return None
    return pr if isinstance(pr, dict) else {k: v for k, v in vars(pr).items() if v is not None}


def usd(price: dict, prompt: int, completion: int, cached: int = 0, batch: bool = False) -> float:
    """USD of one call's usage; ``batch``: at the batch prices (``batch_prompt``, ``batch_completion``,
    ``batch_cached_prompt``; the online ones when absent). Cached prompt tokens cost the cached price,
    else the prompt price."""
    p = price.get("prompt", 0.0)
    c = price.get("completion", 0.0)
    k = price.get("cached_prompt")
    if batch:
        p, c = price.get("batch_prompt", p), price.get("batch_completion", c)
        k = price.get("batch_cached_prompt")
    k = p if k is None else k
    return ((prompt - cached) * p + cached * k + completion * c) / 1e6


def worst_prompt_tokens(req: CallRequest) -> int:
    return int(req.prompt_estimate * PROMPT_MARGIN) + TOKENS_PER_MESSAGE * len(req.messages)


class Pricing:
    """One session's prices: the worst case of a request (for its lease) and the cost of a reply."""

    def __init__(self, prices: Mapping | None, max_usd: float | None = None):
        self.prices = prices or {}
        self.max_usd = max_usd or 0.0

    def missing(self, models: list[str]) -> list[str]:
        return [m for m in dict.fromkeys(models) if price_of(self.prices, m) is None]

    def worst(self, req: CallRequest) -> float:
        price = price_of(self.prices, req.model)
        if price is None:
            return 0.0
        return usd(price, worst_prompt_tokens(req), int(req.params.get("max_tokens") or 0))

    def paid(self, model: str, response: Mapping, batch: bool = False) -> float:
        price = price_of(self.prices, model)
        if price is None:
            return 0.0
        return usd(price, int(response.get("prompt_tokens") or 0), int(response.get("completion_tokens") or 0),
                   int(response.get("cached_tokens") or 0), batch=batch or bool(response.get("batch")))
