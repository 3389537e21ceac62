"""``duel_verdict``'s materialization metadata, made for reading in the Dagster UI.

The gate is one line (its verdict and why); the figures a user follows across partitions and over
time are numbers (mean score, parse rate, accepted share, gate margin and bound, cost per accepted
turn), so the UI plots them; buckets, exclusions, bucket notes, per-judge and per-metric figures,
models and spend are typed tables. See :mod:`.readable` for the entry kinds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pandas as pd

from .. import readable
from ..readable import Markdown, Table
from ..settings import BUCKETS, METRICS, MetricName
from .buckets import bucket_counts, excluded_counts
from .gate import Gate
from .verdicts import histogram_markdown, metric_win_rates, per_judge_stats, standin_note

ACCEPTED = ("final", "refined")


def gate_line(g: Gate) -> str:
    """``ACCEPT: ...`` or ``REJECT: ...``: the verdict and what it rests on, in one line."""
    if g.reasons:
        return f"{g.verdict}: " + "; ".join(g.reasons)
    return (f"{g.verdict}: mean margin {g.mean_margin} >= minimum {g.min_margin}; bootstrap {g.confidence:.0%} "
            f"lower bound {g.lower_bound} > 0; parsed fraction {g.parsed_fraction:.2f} >= minimum {g.min_parsed_fraction}")


def gate_settings_line(g: Gate) -> str:
    return (f"min_margin {g.min_margin:g}, confidence {g.confidence:g}, resamples {g.resamples}, "
            f"min_parsed_fraction {g.min_parsed_fraction:g}")


def bucketing_line(b: dict) -> str:
    return f"final >= {b['final']:g}, refined >= {b['refined']:g}; leak suspects: {b['leak_action']}"


def per_judge_table(stats: list[dict]) -> Table:
    return readable.table(
        [("judge", "string"), ("judgements", "int"), ("parse_rate", "float"), ("position_consistency", "float"),
         ("majority_agreement", "float"), ("mean_margin", "float")], stats)


def metric_table(rows: list[dict], weights: Mapping[MetricName, float] | None = None) -> Table:
    rates = metric_win_rates(rows)
    return readable.table([("metric", "string"), ("weight", "float"), ("challenger_win_rate", "float")],
                          ({"metric": m, "weight": float((weights or {}).get(m, 1.0)), "challenger_win_rate": rates[m]}
                           for m in METRICS))


def models_table(prov: dict) -> Table:
    rows = [{"role": role, "served_model": model, "rows": int(n)}
            for role, models in (prov.get("served_models") or {}).items() for model, n in sorted(models.items())]
    return readable.table([("role", "string"), ("served_model", "string"), ("rows", "int")], rows)


def spend_entries(cost: dict) -> dict:
    """:func:`..spend.spend`'s figures: numbers, and one table of tokens and cost by role."""
    by_cost = cost.get("cost_by_role_usd") or {}
    rows = [{"role": role, "prompt_tokens": int(t["prompt"]), "completion_tokens": int(t["completion"]),
             "cached_prompt_tokens": int(t["cached_prompt"]), "cost_usd": by_cost.get(role)}
            for role, t in (cost.get("tokens_by_role") or {}).items()]
    return {
        "spend_by_role": readable.table([("role", "string"), ("prompt_tokens", "int"), ("completion_tokens", "int"),
                                         ("cached_prompt_tokens", "int"), ("cost_usd", "float")], rows),
        "accepted_turns": int(cost.get("accepted_turns") or 0),
        "tokens_per_accepted_turn": cost.get("tokens_per_accepted_turn"),
        "cost_usd": cost.get("cost_usd"),
        "cost_per_accepted_turn_usd": cost.get("cost_per_accepted_turn_usd"),
    }


def verdict_metadata(rows: list[dict], judge_df: pd.DataFrame, g: Gate, prov: dict,
                     weights: Mapping[MetricName, float] | None = None) -> dict:
    """The readable metadata of a partition's verdicts (every value passes :func:`.readable.is_readable`)."""
    parsed = [r["score"] for r in rows if r["score"] is not None]
    dueled = [r for r in rows if not r.get("excluded_reason")]
    accepted = sum(1 for r in dueled if r.get("bucket") in ACCEPTED)
    note = standin_note(prov)
    return {
        "gate": gate_line(g),
        "gate_settings": gate_settings_line(g),
        "gate_mean_margin": g.mean_margin,
        "gate_lower_bound": g.lower_bound,
        "turns": len(rows), "dueled": len(dueled), "parsed": len(parsed),
        "parse_rate": round(len(parsed) / len(dueled), 4) if dueled else None,
        "mean_score": round(sum(parsed) / len(parsed), 3) if parsed else None,
        "accepted_share": round(accepted / len(dueled), 4) if dueled else None,
        "excluded_by_reason": readable.counts(excluded_counts(rows), "reason"),
        "buckets": readable.counts(bucket_counts(rows), "bucket", order=(*BUCKETS, "parse-fail"), share=True),
        "bucket_notes": readable.counts(dict(Counter(r["bucket_note"] for r in rows if r["bucket_note"])), "note"),
        "per_judge": per_judge_table(per_judge_stats(judge_df)),
        "metric_win_rates": metric_table(rows, weights),
        "score_histogram": Markdown(histogram_markdown(parsed)),
        "standin": prov["standin"],
        **({"standin_note": note} if note else {}),
        "served_models": models_table(prov),
    }
