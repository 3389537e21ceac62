"""What a partition's training turns cost: tokens and estimated money per call role and per
accepted (final + refined) turn.

Counted from the rows (a reply served from the call cache still carries the usage it was bought
with), so the figure is what producing the partition's data cost, whichever run paid for it.
Money uses the same rule as the call layer (:meth:`CallStats.cost`: ``[prices."model"]`` prompt,
completion, cached_prompt per 1M tokens).
"""
from __future__ import annotations

import pandas as pd

from .. import tables
from ..calls import CallStats

ROLE_TABLES = {"king": ("king_answers", "model"), "challenger": ("challenger_answers", "model"),
               "judge": ("judge_scores", "judge")}


def role_tokens(role: str, df: pd.DataFrame | None) -> CallStats:
    table, model_col = ROLE_TABLES[role]
    stats = CallStats()
    for r in tables.records(table, df):
        if r.get("error_kind") == "skipped" or not r.get(model_col):
            continue
        stats.add_tokens(r[model_col], int(r.get("prompt_tokens") or 0), int(r.get("completion_tokens") or 0),
                         int(r.get("cached_tokens") or 0))
    return stats


def spend(frames: dict[str, pd.DataFrame | None], prices, accepted: int) -> dict:
    """Tokens and cost by role (``frames``: role -> its table's rows for the partition) and per
    accepted turn; costs are None without prices."""
    per_role = {role: role_tokens(role, df) for role, df in frames.items()}
    tokens = {role: {"prompt": s.prompt_tokens, "completion": s.completion_tokens, "cached_prompt": s.cached_tokens}
              for role, s in per_role.items()}
    costs = {role: s.cost(prices) for role, s in per_role.items()}
    total_tokens = sum(t["prompt"] + t["completion"] for t in tokens.values())
    known = [c for c in costs.values() if c is not None]
    total_cost = round(sum(known), 6) if len(known) == len(costs) else None
    return {
        "tokens_by_role": tokens,
        "cost_by_role_usd": costs if total_cost is not None else None,
        "accepted_turns": accepted,
        "tokens_per_accepted_turn": round(total_tokens / accepted) if accepted else None,
        "cost_usd": total_cost,
        "cost_per_accepted_turn_usd": round(total_cost / accepted, 6) if accepted and total_cost is not None else None,
    }
