"""A partition's verdicts: per-turn duel scores and buckets, the partition gate, per-judge
statistics and who answered (the metadata built from them is :mod:`.metadata`)."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pandas as pd

from .. import tables
from ..settings import METRICS, ChainConfig, GateConfig
from .buckets import bucket_for, excluded_counts
from .gate import Gate, gate
from .replies import CHALLENGER_FIRST, KING_FIRST, row_margins
from .scores import TurnScore, score_turn

IDENTICAL = "identical_answers"  # judge rows' reason when both answers take the same action (lib/duel/judging.py)


def _excluded_reason(king: dict, chal: dict) -> str | None:
    """A turn is excluded when either of its answers says so (the king's reason first)."""
    return king.get("excluded_reason") or chal.get("excluded_reason") or None


def verdict_rows(judge_df: pd.DataFrame, challenger_df: pd.DataFrame, turn_ids: list[str], cfg: ChainConfig,
                 king_df: pd.DataFrame | None = None) -> list[dict]:
    """One verdict per turn: duel score, bucket and breakdown. A turn whose king or challenger answer
    carries an ``excluded_reason`` gets that reason, no score and no bucket (it is neither parsed
    nor a parse failure)."""
    by_turn: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    opponent: dict[str, str | None] = {}
    identical: set[str] = set()  # both answers took the same action: a tie, no judge asked
    for row in tables.records("judge_scores", judge_df):
        by_turn[row["turn_id"]][row["judge"]].append(row_margins(row))
        opponent[row["turn_id"]] = row.get("opponent")
        if row.get("error") == IDENTICAL:
            identical.add(row["turn_id"])
    chals = tables.by_turn("challenger_answers", challenger_df)
    kings = tables.by_turn("king_answers", king_df)
    rows = []
    for tid in turn_ids:
        c, k = chals.get(tid, {}), kings.get(tid, {})
        fmt_ok = bool(c.get("format_ok"))
        leak = bool(c.get("leak_suspect"))
        base: dict[str, Any] = {"turn_id": tid, "opponent": opponent.get(tid), "challenger_format_ok": fmt_ok, "leak_suspect": leak}
        excluded = _excluded_reason(k, c)
        if excluded:
            rows.append({**base, "parsed": None, "score": None, "bucket": None, "bucket_note": None,
                         "unparsed_reason": None, "excluded_reason": excluded, "judges_parsed": None,
                         "judges_total": None, **{f"{m}_win": None for m in METRICS}, "per_judge": None})
            continue
        ts = score_turn(dict(by_turn.get(tid, {})), cfg.metric_weights)
        if tid in identical:
            ts = TurnScore(True, 50.0, 0, ts.judges_total, {m: 0.5 for m in METRICS}, {})
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
            **base, "parsed": ts.parsed, "score": None if ts.score is None else round(ts.score, 3), "bucket": bucket,
            "bucket_note": note, "unparsed_reason": unparsed, "excluded_reason": None,
            "judges_parsed": ts.judges_parsed, "judges_total": ts.judges_total,
            **{f"{m}_win": ts.per_metric.get(m) for m in METRICS},
            "per_judge": {j: round(v, 3) for j, v in ts.per_judge.items()},
        })
    return rows


def bucketing(cfg: ChainConfig) -> dict:
    """The settings that put a score in a bucket, as recorded with a partition's verdicts."""
    return {"final": float(cfg.buckets.final), "refined": float(cfg.buckets.refined), "leak_action": cfg.leakage.action}


def gate_scores(rows: list[dict]) -> list[float | None]:
    """The scores the gate sees: every turn that is not excluded (None where it did not parse)."""
    return [r["score"] for r in rows if not r.get("excluded_reason")]


def partition_gate(rows: list[dict], cfg: GateConfig) -> Gate:
    """The gate of one partition's verdict rows: excluded turns are neither in the parsed fraction
    nor in the margins."""
    return gate(gate_scores(rows), cfg, excluded=excluded_counts(rows))


# ---------------------------------------------------------------- who answered


def _answered(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("error_kind") != "skipped"]


def _models(rows: list[dict], configured_key: str) -> tuple[dict[str, int], dict[str, int]]:
    served = Counter(r["served_model"] for r in rows if r.get("served_model"))
    configured = Counter(r[configured_key] for r in rows if r.get(configured_key))
    return dict(served), dict(configured)


def provenance(king_df: pd.DataFrame | None, challenger_df: pd.DataFrame | None,
               judge_df: pd.DataFrame | None) -> dict:
    """Who answered and judged this partition: how many rows the offline stand-in produced (a row's
    ``standin`` flag), and per role the models the endpoint said served the calls (``served_model``)
    beside the configured ones."""
    roles = {"king": _answered(tables.records("king_answers", king_df)),
             "challenger": _answered(tables.records("challenger_answers", challenger_df)),
             "judge": _answered(tables.records("judge_scores", judge_df))}
    out: dict = {"served_models": {}, "configured_models": {}}
    for role, rows in roles.items():
        served, configured = _models(rows, "judge" if role == "judge" else "model")
        out["served_models"][role], out["configured_models"][role] = served, configured
    answers = roles["king"] + roles["challenger"]
    out.update(answers=len(answers), standin_answers=sum(bool(r.get("standin")) for r in answers),
               judgements=len(roles["judge"]), standin_judgements=sum(bool(r.get("standin")) for r in roles["judge"]))
    out["standin"] = bool(out["standin_answers"] or out["standin_judgements"])
    return out


def merge_provenance(items: list[dict]) -> dict:
    """The provenance of several partitions together."""
    out: dict = {"served_models": {}, "configured_models": {}, "answers": 0, "standin_answers": 0,
                 "judgements": 0, "standin_judgements": 0}
    for p in items:
        for k in ("answers", "standin_answers", "judgements", "standin_judgements"):
            out[k] += p.get(k, 0)
        for kind in ("served_models", "configured_models"):
            for role, models in (p.get(kind) or {}).items():
                acc = out[kind].setdefault(role, Counter())
                acc.update(models)
    for kind in ("served_models", "configured_models"):
        out[kind] = {role: dict(c) for role, c in out[kind].items()}
    out["standin"] = bool(out["standin_answers"] or out["standin_judgements"])
    return out


def standin_note(p: dict) -> str | None:
    """One plain sentence when the offline stand-in answered or judged, else None."""
    if not p.get("standin"):
        return None
    return (f"The offline stand-in answered, not a model: {p['standin_answers']} of {p['answers']} answers and "
            f"{p['standin_judgements']} of {p['judgements']} judgements came from duel-assets' stand-in server "
            "(deterministic text and heuristic verdicts).")


# ---------------------------------------------------------------- judges and metrics


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


def metric_win_rates(rows: list[dict]) -> dict[str, float | None]:
    parsed = [r for r in rows if r.get("parsed")]
    return {m: (round(float(np.mean([r[f"{m}_win"] for r in parsed])), 4) if parsed else None) for m in METRICS}


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
        lines.append(f"| \\[{r['from']}, {r['to']}{']' if r['to'] == 100 else ')'} | {r['turns']} | {bar} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_none_"
