"""The duel's steps as plain functions over rows (the assets only wire them). No Dagster imports."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .llm import CallStats
from .scoring import CHALLENGER_FIRST, KING_FIRST, TurnScore, bucket_counts, bucket_for, score_turn
from .settings import METRICS, ChainConfig
from .tables import columns
from .trajectories import Turn, turn_from_record


def _json(v) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False)


def _loads(v, default=None):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return default
    if isinstance(v, str):
        return json.loads(v) if v else default
    return v


# ---------------------------------------------------------------- turns


def turn_rows(turns: list[Turn]) -> list[dict]:
    return [{
        "turn_id": t.turn_id, "instance_id": t.instance_id, "repo": t.repo, "source": t.source, "traj_id": t.traj_id,
        "step": t.step, "protocol": t.protocol, "history": _json(t.history), "reference": _json(t.reference),
        "tools": _json(t.tools), "outcome": t.outcome, "trimmed": t.trimmed,
        "history_messages": len(t.history), "history_chars": sum(len(m.get("content") or "") for m in t.history),
    } for t in turns]


def turns_from_frame(df: pd.DataFrame) -> list[Turn]:
    out = []
    for rec in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
        rec["tools"] = _loads(rec.get("tools"))
        rec["reference"] = _loads(rec.get("reference"), {})
        out.append(turn_from_record(rec))
    return out


def pr_by_instance(df: pd.DataFrame) -> dict[str, dict]:
    return {r["instance_id"]: r for r in df.to_dict("records")}


# the stage's parts live in their own modules; these names stay importable from here
from .answers import Planned, answer_row, generation_params, history_text, plan_generation  # noqa: E402,F401
from .judging import JudgeJob, Judged, judge_jobs_for_turn, judge_once, judge_params, judge_row  # noqa: E402,F401
from .stage import ROLES, StageResult, run_stage, run_stage_async  # noqa: E402,F401


def _margins_from_row(row: dict) -> dict[str, int] | None:
    if not row.get("parsed"):
        return None
    return {m: int(row[f"{m}_challenger"]) - int(row[f"{m}_opponent"]) for m in METRICS}


# ---------------------------------------------------------------- verdicts


def verdict_rows(judge_df: pd.DataFrame, challenger_df: pd.DataFrame, turn_ids: list[str], cfg: ChainConfig) -> list[dict]:
    by_turn: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    opponent: dict[str, str] = {}
    for row in judge_df.to_dict("records"):
        by_turn[row["turn_id"]][row["judge"]].append(_margins_from_row(row))
        opponent[row["turn_id"]] = row.get("opponent")
    chals = {r["turn_id"]: r for r in challenger_df.to_dict("records")}
    identical = {r["turn_id"] for r in judge_df.to_dict("records") if r.get("error") == "identical_answers"}
    rows = []
    for tid in turn_ids:
        ts = score_turn(dict(by_turn.get(tid, {})), cfg.metric_weights)
        if tid in identical:  # the same action on both sides: a tie, no judge asked
            ts = TurnScore(True, 50.0, 0, ts.judges_total, {m: 0.5 for m in METRICS}, {})
        c = chals.get(tid, {})
        fmt_ok = bool(c.get("format_ok")) if c else False
        leak = bool(c.get("leak_suspect")) if c and c.get("leak_suspect") is not None and not pd.isna(c.get("leak_suspect")) else False
        bucket = bucket_for(ts.score, cfg.buckets) if ts.parsed else None
        note = "identical answers (tie)" if tid in identical else None
        if bucket in ("final", "refined") and not fmt_ok:
            bucket, note = "defeat", f"challenger format: {c.get('format_reason')}"
        elif bucket == "final" and leak:
            bucket = "refined" if cfg.leakage.action == "demote" else "defeat"
            note = f"leak suspect ({cfg.leakage.action})"
        elif bucket == "refined" and leak and cfg.leakage.action == "drop":
            bucket, note = "defeat", "leak suspect (drop)"
        unparsed = None
        if not ts.parsed:
            unparsed = "no judge replied" if not ts.judges_total else f"{ts.judges_parsed}/{ts.judges_total} judges parsed"
        rows.append({
            "turn_id": tid, "opponent": opponent.get(tid), "parsed": ts.parsed,
            "score": None if ts.score is None else round(ts.score, 3), "bucket": bucket, "bucket_note": note,
            "unparsed_reason": unparsed, "judges_parsed": ts.judges_parsed, "judges_total": ts.judges_total,
            **{f"{m}_win": ts.per_metric.get(m) for m in METRICS},
            "per_judge": _json({k: round(v, 3) for k, v in ts.per_judge.items()}),
            "challenger_format_ok": fmt_ok, "leak_suspect": leak,
        })
    return rows


def per_judge_stats(judge_df: pd.DataFrame) -> list[dict]:
    """Per judge: parse rate, position consistency, agreement with the panel majority, mean margin."""
    if judge_df.empty:
        return []
    df = judge_df[judge_df["error_kind"].fillna("") != "skipped"].copy()
    if df.empty:
        return []
    df["margin"] = sum(df[f"{m}_challenger"].astype("float") - df[f"{m}_opponent"].astype("float") for m in METRICS)
    # per (turn, judge): sign of total margin averaged over parsed orders
    parsed = df[df["parsed"] == True]  # noqa: E712
    turn_judge = parsed.groupby(["turn_id", "judge"])["margin"].mean().apply(np.sign).rename("sign").reset_index()
    majority = turn_judge.groupby("turn_id")["sign"].apply(lambda s: np.sign(s.sum())).rename("maj")
    tj = turn_judge.join(majority, on="turn_id")
    out = []
    for judge, g in df.groupby("judge"):
        pg = g[g["parsed"] == True]  # noqa: E712
        both = pg.pivot_table(index="turn_id", columns="order", values="margin", aggfunc="first").dropna()
        consistent = None
        if len(both) and KING_FIRST in both and CHALLENGER_FIRST in both:
            consistent = float((np.sign(both[KING_FIRST]) == np.sign(both[CHALLENGER_FIRST])).mean())
        mine = tj[tj["judge"] == judge]
        out.append({
            "judge": judge,
            "judgements": int(len(g)),
            "parse_rate": round(float(g["parsed"].astype(bool).mean()), 4),
            "position_consistency": None if consistent is None else round(consistent, 4),
            "majority_agreement": round(float((mine["sign"] == mine["maj"]).mean()), 4) if len(mine) else None,
            "mean_margin": round(float(pg["margin"].mean()), 3) if len(pg) else None,
        })
    return out


def metric_win_rates(verdict_df: pd.DataFrame) -> dict[str, float | None]:
    parsed = verdict_df[verdict_df["parsed"] == True]  # noqa: E712
    return {m: (round(float(parsed[f"{m}_win"].mean()), 4) if len(parsed) else None) for m in METRICS}


def histogram(scores: list[float], bins: int = 10) -> list[dict]:
    counts, edges = np.histogram(np.asarray(scores, dtype=float), bins=bins, range=(0, 100))
    return [{"from": int(edges[i]), "to": int(edges[i + 1]), "turns": int(c)} for i, c in enumerate(counts)]


def histogram_markdown(scores: list[float], bins: int = 10, width: int = 40) -> str:
    """The score histogram as a Markdown table with text bars (the UI renders Markdown metadata)."""
    rows = histogram(scores, bins)
    peak = max([r["turns"] for r in rows] + [1])
    lines = ["| score | turns | |", "|---|---:|---|"]
    for r in rows:
        bar = "█" * round(width * r["turns"] / peak)
        lines.append(f"| {r['from']}-{r['to']}{']' if r['to'] == 100 else ')'} | {r['turns']} | {bar} |")
    return "\n".join(lines)


@dataclass
class RateCheck:
    name: str
    passed: bool
    rate: float | None
    threshold: float
    numerator: int
    denominator: int
    description: str


def rate_check(name: str, numerator: int, denominator: int, threshold: float, at_most: bool, what: str) -> RateCheck:
    """Passes when the rate is >= threshold (or <= for ``at_most``); an empty denominator passes."""
    rate = numerator / denominator if denominator else None
    ok = rate is None or (rate <= threshold if at_most else rate >= threshold)
    rel = "<=" if at_most else ">="
    return RateCheck(name, ok, None if rate is None else round(rate, 4), threshold, numerator, denominator,
                     f"{what}: {numerator}/{denominator} = {'-' if rate is None else f'{rate:.1%}'} (must be {rel} {threshold:.0%})")


def answer_checks(rows: list[dict], cfg: ChainConfig, role: str) -> list[RateCheck]:
    answered = [r for r in rows if not r.get("error_kind")]
    checks = [rate_check("format_ok_rate", sum(bool(r.get("format_ok")) for r in answered), len(answered),
                         cfg.checks.min_format_ok_rate, False, f"{role} answers in protocol")]
    if role == "challenger":
        checks.append(rate_check("leak_rate", sum(bool(r.get("leak_suspect")) for r in answered), len(answered),
                                 cfg.checks.max_leak_rate, True, "challenger answers suspected of using the hidden patch"))
    return checks


def judge_checks(rows: list[dict], cfg: ChainConfig) -> list[RateCheck]:
    judged = [r for r in rows if r.get("error_kind") != "skipped"]
    return [rate_check("parse_rate", sum(bool(r.get("parsed")) for r in judged), len(judged), cfg.checks.min_parse_rate,
                       False, "judge replies that parsed")]


def markdown_table(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_none_"


def too_many_failures(asset: str, stats: CallStats, cfg: ChainConfig) -> str | None:
    """The reason to fail the step when this role's failure rate passes calls.max_failure_rate."""
    rate = stats.failure_rate()
    if rate <= cfg.calls.max_failure_rate:
        return None
    return (f"{asset}: {stats.failed}/{stats.requested} calls failed ({rate:.0%} > calls.max_failure_rate "
            f"{cfg.calls.max_failure_rate:.0%}); by kind {dict(stats.failures)}")


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
    if role == "judge":
        judged = [r for r in rows if r.get("error_kind") != "skipped"]
        md.update({
            "judgements": len(rows), "judges": cfg.judges.models, "position_swap": cfg.judges.position_swap,
            "parsed": sum(bool(r["parsed"]) for r in rows),
            "parse_rate": round(sum(bool(r["parsed"]) for r in judged) / len(judged), 4) if judged else None,
            "retried": sum(bool(r["retried"]) for r in rows),
            "not_judged_by_reason": skipped,
            "per_judge": markdown_table(per_judge_stats(pd.DataFrame(rows, columns=columns("judge_scores")))),
        })
        return md
    md.update({
        "turns": len(rows), "model": cfg.generation.model,
        "format_ok": sum(bool(r.get("format_ok")) for r in rows),
        "format_fail_by_reason": dict(Counter(r.get("format_reason") for r in rows if not r.get("format_ok"))),
        "skipped_by_reason": skipped,
    })
    if role == "challenger":
        md["leak_suspects"] = sum(bool(r.get("leak_suspect")) for r in rows)
    return md


def verdict_metadata(rows: list[dict], verdict_df: pd.DataFrame, judge_df: pd.DataFrame) -> dict:
    """Materialization metadata of a partition's verdicts (``per_judge`` and ``score_histogram`` are
    Markdown)."""
    parsed = [r["score"] for r in rows if r["score"] is not None]
    judge_stats = per_judge_stats(judge_df)
    return {
        "turns": len(rows), "parsed": len(parsed),
        "mean_score": round(sum(parsed) / len(parsed), 3) if parsed else None,
        "buckets": bucket_counts(rows),
        "bucket_notes": dict(Counter(r["bucket_note"] for r in rows if r["bucket_note"])),
        "per_judge": markdown_table(judge_stats),
        "per_judge_stats": judge_stats,
        "metric_win_rates": metric_win_rates(verdict_df),
        "score_histogram": histogram_markdown(parsed),
    }


def merged_stats(stats: list[CallStats]) -> CallStats:
    total = CallStats()
    for s in stats:
        total.merge(s)
    return total
