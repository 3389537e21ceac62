"""The duel's steps as plain functions over rows (the assets only wire them). No Dagster imports."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from . import prompts
from .leakage import leak_evidence
from .llm import CallRequest, CallResult, CallStats
from .protocol import check_answer
from .scoring import CHALLENGER_FIRST, KING_FIRST, JudgeReply, parse_judge_reply, side_scores, sides
from .settings import ChainConfig
from .tables import columns
from .trajectories import Turn
from .verdicts import markdown_table, per_judge_stats


def _json(v) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False)


# ---------------------------------------------------------------- turns


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
        row.update(side_scores(rep, job.order))
        c_side, o_side = sides(job.order)
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


def merged_stats(stats: list[CallStats]) -> CallStats:
    total = CallStats()
    for s in stats:
        total.merge(s)
    return total
