"""The LLM stage of a partition: king, challenger and judges in one event loop.

Each turn's judgements start as soon as both its answers exist, so the stage has no barrier between
generation and judging. Along the way:

* an answer that comes back but breaks the protocol is sampled again (next sample index, up to
  ``generation.max_resamples``); a king still malformed after that is not dueled (DUEL_MODE 2);
* when both answers take the same action, the duel is a tie and no judge is asked;
* with ``judges.skip_decided``, judges are asked in waves (first enough of the panel to make the turn
  parsed, then one judge at a time) and the rest are not asked once the bucket is fixed whatever
  they would say (:mod:`.decided`).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from ..calls import CallStats
from ..settings import ChainConfig
from ..turn import Turn
from .answers import KING_MALFORMED, Planned, answer_row, malformed, plan_generation, resample
from .decided import decided_bucket
from .judging import DECIDED, Judged, JudgeJob, judge_jobs_for_turn, judge_once, judge_row, margins

ROLES = ("king", "challenger", "judge")
PLAN_CHUNK = 16  # turns planned (and their calls queued) before the event loop runs again


@dataclass
class StageResult:
    rows: dict[str, list[dict]]  # role -> rows (only the roles asked for)
    stats: dict[str, CallStats]  # role -> calls of that role
    judge_skips: Counter = field(default_factory=Counter)  # turns not judged, by reason


def waves(judges: list[str], skip_decided: bool) -> list[list[str]]:
    """The order in which a turn's judges are asked: all at once, or enough to make the turn parsed
    (half the panel, rounded up) and then one at a time."""
    if not skip_decided or len(judges) < 2:
        return [list(judges)]
    first = math.ceil(len(judges) / 2)
    return [judges[:first]] + [[j] for j in judges[first:]]


async def _judge_turn(call, jobs: list[JudgeJob], cfg: ChainConfig, stats: CallStats) -> list[tuple[JudgeJob, Judged | None]]:
    live = [j for j in jobs if j.request is not None]
    if not live:
        return [(j, None) for j in jobs]
    outcome: dict[int, Judged] = {}
    skipped: set[int] = set()
    skip_decided = cfg.judges.skip_decided
    plan = waves(list(dict.fromkeys(j.judge for j in live)), skip_decided)
    for n, wave in enumerate(plan):
        batch = [j for j in live if j.judge in wave]
        stats.requested += len(batch)
        for judge in wave:
            call.expect(sum(j.judge == judge for j in batch), "judge", judge)
        for j, judged in zip(batch, await asyncio.gather(*(judge_once(call, j, stats) for j in batch))):
            outcome[id(j)] = judged
        if n + 1 < len(plan):
            done: dict[str, list] = {}
            pending: Counter = Counter()
            for j in live:
                if id(j) in outcome:
                    done.setdefault(j.judge, []).append(margins(outcome[id(j)], j.order))
                else:
                    pending[j.judge] += 1
            if decided_bucket(done, pending, cfg.metric_weights, cfg.buckets):
                skipped = {id(j) for j in live if id(j) not in outcome}
                stats.skipped_decided += len(skipped)
                break
    out = []
    for j in jobs:
        if id(j) in skipped:
            j = JudgeJob(j.turn_id, j.judge, j.order, j.opponent, None, DECIDED)
        out.append((j, outcome.get(id(j))))
    return out


async def _answer(call, role: str, p: Planned, first, cfg: ChainConfig, prs, mode: int, stats: CallStats) -> dict:
    """The answer row of one turn: the first sample, then re-samples while it is malformed."""
    r = await first if first is not None else None
    row = answer_row(role, p, r, prs)
    max_resamples = cfg.generation.max_resamples
    for s in range(1, max_resamples + 1):
        if p.request is None or not malformed(row):
            break
        p = resample(p, s)
        stats.requested += 1
        stats.resamples += 1
        call.expect(1, role, cfg.generation.model)
        row = answer_row(role, p, await call(p.request, stats), prs)
    if role == "king" and mode == 2 and malformed(row):
        row["excluded_reason"] = KING_MALFORMED
    return row


async def run_stage_async(caller, turns: list[Turn], cfg: ChainConfig, prs: dict[str, dict], mode: int, roles: set[str],
                          king_rows: dict[str, dict] | None = None, chal_rows: dict[str, dict] | None = None,
                          label: str = "duel") -> StageResult:
    """Roles not asked for are read from ``king_rows`` / ``chal_rows`` (answers already stored)."""
    stats = {r: CallStats() for r in ROLES}
    planned: dict[str, list[Planned]] = {role: [] for role in ("king", "challenger") if role in roles}
    judge_skips: Counter = Counter()
    async with caller.session(label) as call:
        gen: dict[str, dict[str, asyncio.Future]] = {role: {} for role in planned}
        for start in range(0, len(turns), PLAN_CHUNK):
            for role, plan in planned.items():
                chunk = plan_generation(role, turns[start:start + PLAN_CHUNK], cfg, prs, mode)
                plan += chunk
                reqs = [(p.turn.turn_id, p.request) for p in chunk if p.request is not None]
                stats[role].requested += len(reqs)
                call.expect(len(reqs), role, cfg.generation.model)
                hits = caller.cache.get_many([req for _, req in reqs])
                first = {tid: asyncio.ensure_future(call(req, stats[role], hits.get(req.key))) for tid, req in reqs}
                gen[role].update({p.turn.turn_id: asyncio.ensure_future(
                    _answer(call, role, p, first.get(p.turn.turn_id), cfg, prs, mode, stats[role])) for p in chunk})
            await asyncio.sleep(0)  # the first requests go out while the rest are planned

        async def judge_turn(t: Turn) -> list[tuple[JudgeJob, Judged | None]]:
            k = await gen["king"][t.turn_id] if "king" in gen else (king_rows or {}).get(t.turn_id)
            c = await gen["challenger"][t.turn_id] if "challenger" in gen else (chal_rows or {}).get(t.turn_id)
            jobs = judge_jobs_for_turn(t, k, c, prs.get(t.instance_id), cfg, mode)
            if jobs and jobs[0].request is None:
                judge_skips[jobs[0].skip_reason] += 1
                stats["judge"].identical_answers += int(jobs[0].skip_reason == "identical_answers")
            return await _judge_turn(call, jobs, cfg, stats["judge"])

        t0 = time.monotonic()
        judged = await asyncio.gather(*(judge_turn(t) for t in turns)) if "judge" in roles else []
        rows = {role: [await gen[role][p.turn.turn_id] for p in planned[role]] for role in gen}
        wall = time.monotonic() - t0
        call.trace_into(stats["judge"])
    call.raise_over_budget()  # every call in flight has landed (and is stored): then the step fails
    if "judge" in roles:
        rows["judge"] = [judge_row(j, o) for pairs in judged for j, o in pairs]
    for s in stats.values():
        s.wall_s = wall
    return StageResult(rows=rows, stats=stats, judge_skips=judge_skips)


def run_stage(caller, *args, **kwargs) -> StageResult:
    """:func:`run_stage_async` in its own event loop (one per asset step)."""
    return caller.run_coroutine(run_stage_async(caller, *args, **kwargs))
