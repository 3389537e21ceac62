"""The duel's steps as plain functions over rows (the assets only wire them). No Dagster imports."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import prompts
from .leakage import leak_evidence
from .llm import CallRequest, CallResult, CallStats
from .protocol import check_answer
from .scoring import (CHALLENGER_FIRST, KING_FIRST, JudgeReply, bucket_counts, bucket_for, parse_judge_reply,
                      score_turn, sides)
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


# ---------------------------------------------------------------- answers


def generation_params(cfg: ChainConfig) -> dict:
    return {"temperature": cfg.generation.temperature, "max_tokens": cfg.generation.max_tokens}


@dataclass
class Planned:
    turn: Turn
    request: CallRequest | None
    skip_reason: str | None = None


def plan_generation(role: str, turns: list[Turn], cfg: ChainConfig, prs: dict[str, dict] | None = None,
                    mode: int = 2) -> list[Planned]:
    excluded = set(cfg.excluded_instance_ids)
    out = []
    for t in turns:
        if t.instance_id in excluded:
            out.append(Planned(t, None, "excluded_instance_id"))
            continue
        if role == "king" and mode == 1:
            out.append(Planned(t, None, "duel_mode_1_uses_reference"))
            continue
        msgs = prompts.king_messages(t) if role == "king" else prompts.challenger_messages(t, (prs or {}).get(t.instance_id))
        out.append(Planned(t, CallRequest(role=role, model=cfg.generation.model, messages=msgs,
                                          params=generation_params(cfg), tools=t.tools, tag=t.turn_id)))
    return out


def history_text(turn: Turn) -> str:
    return "\n".join((m.get("content") or "") + json.dumps(m.get("tool_calls") or "") for m in turn.history)


def answer_row(role: str, p: Planned, r: CallResult | None, prs: dict[str, dict] | None = None) -> dict:
    t = p.turn
    base = {"turn_id": t.turn_id, "instance_id": t.instance_id, "role": role, "sample_index": 0, "opponent": None}
    if p.request is None or r is None:
        return {**base, "model": None, "format_ok": False, "format_reason": "not_generated",
                "error_kind": "skipped", "error": p.skip_reason, "cached": False, "attempts": 0}
    row = {**base, "model": p.request.model, "call_key": r.key, "cached": r.cached, "attempts": r.attempts}
    if not r.ok:
        row.update(format_ok=False, format_reason="call_failed", error_kind=r.error_kind, error=r.error)
    else:
        check = check_answer(t.protocol, r.content, r.tool_calls, t.tools)
        reason = check.reason
        if check.ok and r.finish_reason == "length":
            reason = "truncated_length"
        row.update(
            content=r.content, reasoning=r.reasoning, tool_calls=_json(r.tool_calls), action=check.action,
            format_ok=check.ok and reason is None, format_reason=reason, finish_reason=r.finish_reason,
            prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
            usage=_json(None if r.usage_missing else {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}),
        )
    if role == "challenger":
        pr = (prs or {}).get(t.instance_id) or {}
        ev = leak_evidence(prompts.render_answer(row.get("content"), row.get("tool_calls")), history_text(t), pr.get("patch")) if r.ok else []
        row.update(leak_suspect=bool(ev), leak_evidence=_json(ev))
    return row


# ---------------------------------------------------------------- judging


def judge_params(cfg: ChainConfig, judge: str) -> dict:
    return {"temperature": cfg.judges.temperature, "max_tokens": cfg.judges.token_limits.get(judge, cfg.judges.max_tokens)}


@dataclass
class JudgeJob:
    turn_id: str
    judge: str
    order: str
    opponent: str
    request: CallRequest | None
    skip_reason: str | None = None


def _failed(row: dict | None) -> bool:
    if row is None:
        return True
    kind = row.get("error_kind")
    return isinstance(kind, str) and bool(kind)


def judge_jobs_for_turn(t: Turn, king_row: dict | None, chal_row: dict | None, pr: dict | None, cfg: ChainConfig,
                        mode: int = 2) -> list[JudgeJob]:
    orders = [KING_FIRST, CHALLENGER_FIRST] if cfg.judges.position_swap else [KING_FIRST]
    opponent = "reference" if mode == 1 else "king"
    if mode == 1:
        opp_ok, opp_text = True, prompts.render_answer(t.reference.get("content"), t.reference.get("tool_calls"))
    else:
        opp_ok = not _failed(king_row)
        opp_text = prompts.render_answer(king_row.get("content"), king_row.get("tool_calls")) if opp_ok else ""
    chal_ok = not _failed(chal_row)
    skip = None if chal_ok and opp_ok else ("challenger_missing" if not chal_ok else f"{opponent}_missing")
    chal_text = prompts.render_answer(chal_row.get("content"), chal_row.get("tool_calls")) if chal_ok else ""
    jobs = []
    for judge in cfg.judges.models:
        for order in orders:
            if skip:
                jobs.append(JudgeJob(t.turn_id, judge, order, opponent, None, skip))
                continue
            a, b = (opp_text, chal_text) if order == KING_FIRST else (chal_text, opp_text)
            msgs = prompts.judge_messages(t, pr, a, b, cfg.judges.max_history_chars)
            jobs.append(JudgeJob(t.turn_id, judge, order, opponent,
                                 CallRequest("judge", judge, msgs, judge_params(cfg, judge), tag=f"{t.turn_id}|{judge}|{order}")))
    return jobs


@dataclass
class Judged:
    result: CallResult
    reply: JudgeReply
    retried: bool


def _parse(r: CallResult, what: str) -> JudgeReply:
    return parse_judge_reply(r.content) if r.ok else JudgeReply(False, error=f"{what} failed: {r.error_kind}")


async def judge_once(call, job: JudgeJob, stats: CallStats) -> Judged:
    """One judgement; a reply that does not parse gets one stricter retry, then counts as a failure."""
    r = await call(job.request, stats)
    rep = _parse(r, "call")
    if not (r.ok and not rep.parsed):
        return Judged(r, rep, False)
    msgs = [*job.request.messages, {"role": "assistant", "content": r.content or ""},
            prompts.judge_retry_message(rep.error or "unparseable")]
    r2 = await call(CallRequest("judge", job.request.model, msgs, job.request.params, tag=job.request.tag + "|retry"), stats)
    return Judged(r2, _parse(r2, "retry call"), True)


def judge_row(job: JudgeJob, judged: Judged | None) -> dict:
    row = {"turn_id": job.turn_id, "judge": job.judge, "order": job.order, "opponent": job.opponent, "retried": False}
    if job.request is None or judged is None:
        row.update(parsed=False, parse_error=f"not judged: {job.skip_reason}", error_kind="skipped", error=job.skip_reason)
        return row
    r, rep = judged.result, judged.reply
    row.update(parsed=rep.parsed, parse_error=rep.error, retried=judged.retried, raw_reply=r.content,
               reason=rep.reason, call_key=r.key, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
               error_kind=r.error_kind, error=r.error)
    if rep.parsed:
        c_side, o_side = sides(job.order)
        for m in METRICS:
            row[f"{m}_challenger"] = rep.scores[m][c_side]
            row[f"{m}_opponent"] = rep.scores[m][o_side]
        row["winner"] = {c_side: "challenger", o_side: "opponent", "tie": "tie"}.get(rep.winner or "", None)
    return row


# ---------------------------------------------------------------- the LLM stage of a partition

ROLES = ("king", "challenger", "judge")


@dataclass
class StageResult:
    rows: dict[str, list[dict]]  # role -> rows (only the roles asked for)
    stats: dict[str, CallStats]  # role -> calls of that role


async def run_stage_async(caller, turns: list[Turn], cfg: ChainConfig, prs: dict[str, dict], mode: int,
                          roles: set[str], king_rows: dict[str, dict] | None = None,
                          chal_rows: dict[str, dict] | None = None, label: str = "duel") -> StageResult:
    """King, challenger and judges of one partition in one event loop under one concurrency bound.

    Each turn's judgements start as soon as both of its answers exist, so the stage has no barrier
    between generation and judging. Roles not asked for are read from ``king_rows`` /
    ``chal_rows`` (answers already in the warehouse)."""
    stats = {r: CallStats() for r in ROLES}
    planned = {role: plan_generation(role, turns, cfg, prs, mode) for role in ("king", "challenger") if role in roles}
    async with caller.session(label) as call:
        tasks: dict[tuple[str, str], asyncio.Task] = {}
        for role, plan in planned.items():
            reqs = [p for p in plan if p.request is not None]
            stats[role].requested = len(reqs)
            call.expect(len(reqs))
            hits = caller.cache.get_many([p.request.key for p in reqs])
            for p in reqs:
                tasks[(role, p.turn.turn_id)] = asyncio.create_task(call(p.request, stats[role], hits.get(p.request.key)))

        async def answer(role: str, p: Planned) -> dict:
            r = await tasks[(role, p.turn.turn_id)] if p.request is not None else None
            return answer_row(role, p, r, prs)

        gen = {role: [asyncio.ensure_future(answer(role, p)) for p in plan] for role, plan in planned.items()}
        by_turn = {role: dict(zip([p.turn.turn_id for p in plan], futs)) for role, futs in gen.items()}

        async def judge_turn(t: Turn) -> list[tuple[JudgeJob, Judged | None]]:
            k = await by_turn["king"][t.turn_id] if "king" in by_turn else (king_rows or {}).get(t.turn_id)
            c = await by_turn["challenger"][t.turn_id] if "challenger" in by_turn else (chal_rows or {}).get(t.turn_id)
            jobs = judge_jobs_for_turn(t, k, c, prs.get(t.instance_id), cfg, mode)
            live = [j for j in jobs if j.request is not None]
            stats["judge"].requested += len(live)
            call.expect(len(live))
            done = await asyncio.gather(*(judge_once(call, j, stats["judge"]) for j in live))
            outcome = dict(zip(map(id, live), done))
            return [(j, outcome.get(id(j))) for j in jobs]

        t0 = time.monotonic()
        judged = await asyncio.gather(*(judge_turn(t) for t in turns)) if "judge" in roles else []
        rows = {role: list(await asyncio.gather(*futs)) for role, futs in gen.items()}
        wall = time.monotonic() - t0
    if "judge" in roles:
        rows["judge"] = [judge_row(j, o) for pairs in judged for j, o in pairs]
    for s in stats.values():
        s.wall_s = wall
    return StageResult(rows=rows, stats=stats)


def run_stage(caller, *args, **kwargs) -> StageResult:
    """:func:`run_stage_async` in its own event loop (one per asset step)."""
    return caller.run_coroutine(run_stage_async(caller, *args, **kwargs))


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
    rows = []
    for tid in turn_ids:
        ts = score_turn(dict(by_turn.get(tid, {})), cfg.metric_weights)
        c = chals.get(tid, {})
        fmt_ok = bool(c.get("format_ok")) if c else False
        leak = bool(c.get("leak_suspect")) if c and c.get("leak_suspect") is not None and not pd.isna(c.get("leak_suspect")) else False
        bucket = bucket_for(ts.score, cfg.buckets) if ts.parsed else None
        note = None
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
