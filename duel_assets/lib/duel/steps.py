"""What the ``duel_calls`` step reports about each role's calls, and when it fails instead of
writing rows (the calls themselves are :mod:`.stage`'s)."""
from __future__ import annotations

from collections import Counter

import pandas as pd

from .. import tables
from ..calls import CallStats
from ..settings import ChainConfig
from ..tables import columns
from ..verdict.verdicts import markdown_table, per_judge_stats
from .judging import parse_rates


def pr_by_instance(df: pd.DataFrame) -> dict[str, dict]:
    return tables.by_instance("pr_records", df)


def too_many_failures(asset: str, stats: CallStats, cfg: ChainConfig) -> str | None:
    """The reason to fail the step when this role's failure rate passes calls.max_failure_rate."""
    rate = stats.failure_rate()
    if rate <= cfg.calls.max_failure_rate:
        return None
    return (f"{asset}: {stats.failed}/{stats.requested} calls failed ({rate:.0%} > calls.max_failure_rate "
            f"{cfg.calls.max_failure_rate:.0%}); {stats.failure_summary()}")


MISSING_ANSWERS = ("king_missing", "challenger_missing")


def nothing_to_judge(key: str, judge_skips: Counter, turns_total: int, answer_failures: list[str]) -> str | None:
    """Why judge_scores must fail instead of writing rows for answers that do not exist: the
    answers failed in this step, or no turn of the partition has both answers."""
    if answer_failures:
        return f"judge_scores: not written because its answers failed ({len(answer_failures)} answer asset(s))"
    missing = sum(judge_skips.get(r, 0) for r in MISSING_ANSWERS)
    if missing and turns_total - sum(judge_skips.values()) == 0:
        return (f"judge_scores: partition {key!r} has no turn with both answers ({dict(judge_skips)}); "
                "materialize king_answers and challenger_answers first")
    return None


def role_metadata(role: str, rows: list[dict], stats: CallStats, cfg: ChainConfig) -> dict:
    """Materialization metadata of one role's rows (``per_judge`` is a Markdown table)."""
    md = {**stats.as_metadata()}
    cost = stats.cost(cfg.prices)
    if cost is not None:
        md["estimated_cost_usd"] = cost
    skipped = dict(Counter(r["error"] for r in rows if r.get("error_kind") == "skipped"))
    served = sorted({r["served_model"] for r in rows if r.get("served_model")})
    md["served_models"] = served
    md["answered_by_standin"] = sum(bool(r.get("standin")) for r in rows)
    if role == "judge":
        judged = [r for r in rows if r.get("error_kind") != "skipped"]
        md.update({
            "judgements": len(rows), "judges": list(cfg.judges.models), "position_swap": cfg.judges.position_swap,
            "parsed": sum(bool(r["parsed"]) for r in rows),
            "parse_rate": round(sum(bool(r["parsed"]) for r in judged) / len(judged), 4) if judged else None,
            "retried": sum(bool(r["retried"]) for r in rows),
            "structured": cfg.judges.structured,
            "parse_rate_by_judge_and_format": parse_rates(rows),
            "not_judged_by_reason": skipped,
            "per_judge": markdown_table(per_judge_stats(pd.DataFrame(rows, columns=columns("judge_scores")))),
        })
        return md
    md.update({
        "turns": len(rows), "model": cfg.generation.model,
        "format_ok": sum(bool(r.get("format_ok")) for r in rows),
        "format_fail_by_reason": dict(Counter(r.get("format_reason") for r in rows if not r.get("format_ok")
                                              and not r.get("excluded_reason"))),
        "excluded_by_reason": dict(Counter(r["excluded_reason"] for r in rows if r.get("excluded_reason"))),
        "skipped_by_reason": skipped,
    })
    if role == "challenger":
        md["leak_suspects"] = sum(bool(r.get("leak_suspect")) for r in rows)
    return md


def merged_stats(stats: list[CallStats]) -> CallStats:
    total = CallStats()
    for s in stats:
        total.merge(s)
    return total
