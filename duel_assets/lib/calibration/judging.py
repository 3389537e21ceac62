"""The configured panel on a labelled set, both orders, through the duel's own call path.

Every (pair, judge) is judged twice: ``a_first`` (``a`` shown as answer A, ``b`` as B) and
``b_first`` (swapped). The request is the duel's judge request (``messages.judge_messages`` with the
pair's history and ``pr_record``), the call goes through the duel's ``LLMCaller`` and its content
cache with the duel's judge parameters, an unparseable reply gets the duel's one stricter retry,
and replies are parsed by ``verdict.replies.parse_judge_reply``. So a calibration measures the judges as
the duel uses them, and a calibration run after a duel (or before it) pays only for calls it has
not made yet.

In scoring terms ``b`` plays the challenger and ``a`` the opponent: ``a_first`` is the duel's
``king_first`` order, ``b_first`` its ``challenger_first``.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..calls import CallRequest, CallStats
from ..duel import messages
from ..duel.judging import Judged, JudgeJob, judge_once, judge_params
from ..settings import METRICS, ChainConfig
from ..verdict.replies import CHALLENGER_FIRST, KING_FIRST, sides
from .pairs import LabelledPair

ORDERS = {"a_first": KING_FIRST, "b_first": CHALLENGER_FIRST}
ROW_COLUMNS = ["pair_id", "kind", "label", "judge", "order", "parsed", "parse_error", "retried", "winner",
               *[f"{m}_{side}" for m in METRICS for side in ("a", "b")], "reason", "raw_reply", "error_kind", "error",
               "prompt_tokens", "completion_tokens", "cached", "call_key", "reply_format"]


@dataclass
class CalibrationRun:
    rows: list[dict]  # one per pair x judge x order
    stats: CallStats
    panel: list[str]
    endpoint: str = ""  # where the judges were asked (settings.endpoint_id: never a secret)
    answered: int = 0  # judgements with a reply (fresh or stored)
    answered_by_standin: int = 0  # of those, replies of the offline stand-in (not a model)


def render(msg: dict) -> str:
    return messages.render_answer(msg.get("content"), msg.get("tool_calls"))


def jobs_for_pair(pair: LabelledPair, cfg: ChainConfig, panel: list[str]) -> list[JudgeJob]:
    turn = pair.as_turn()
    ra, rb = render(pair.a), render(pair.b)
    jobs = []
    for judge in panel:
        for name, order in ORDERS.items():
            first, second = (ra, rb) if name == "a_first" else (rb, ra)
            msgs = messages.judge_messages(turn, pair.pr_record, first, second, cfg.judges.max_history_chars)
            req = CallRequest("judge", judge, msgs, judge_params(cfg, judge, bool(turn.tools)),
                              tools=messages.request_tools(turn.tools),
                              tag=f"calibration|{pair.id}|{judge}|{name}")
            jobs.append(JudgeJob(pair.id, judge, order, "a", req))
    return jobs


def judgement_row(pair: LabelledPair, job: JudgeJob, judged: Judged) -> dict:
    r, rep = judged.result, judged.reply
    name = next(k for k, v in ORDERS.items() if v == job.order)
    row = {"pair_id": pair.id, "kind": pair.kind, "label": pair.label, "judge": job.judge, "order": name,
           "parsed": rep.parsed, "parse_error": rep.error, "retried": judged.retried, "winner": None,
           "reason": rep.reason or None, "raw_reply": r.content, "error_kind": r.error_kind, "error": r.error,
           "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "cached": r.cached,
           "call_key": r.key, "reply_format": r.reply_format or ("text" if r.ok else None)}
    b_side, a_side = sides(job.order)  # b is the challenger, a the opponent
    if rep.parsed:
        assert rep.scores is not None  # a parsed reply has its scores
        for m in METRICS:
            row[f"{m}_a"], row[f"{m}_b"] = rep.scores[m][a_side], rep.scores[m][b_side]
        row["winner"] = {a_side: "a", b_side: "b", "tie": "tie"}.get(rep.winner or "")
    return row


async def _judge_all(caller, jobs: list[tuple[LabelledPair, JudgeJob]], label: str) -> tuple[list[Judged], CallStats]:
    stats = CallStats(requested=len(jobs))
    async with caller.session(label, total=len(jobs)) as call:
        t0 = time.monotonic()
        judged = await asyncio.gather(*(judge_once(call, job, stats) for _, job in jobs))
        stats.wall_s = time.monotonic() - t0
    return list(judged), stats


def run_panel(caller, pairs: list[LabelledPair], cfg: ChainConfig, label: str = "calibration") -> CalibrationRun:
    """Judges every pair with every judge of ``cfg.judges.models`` in both orders."""
    panel = list(dict.fromkeys(cfg.judges.models))
    jobs = [(p, j) for p in pairs for j in jobs_for_pair(p, cfg, panel)]
    judged, stats = caller.run_coroutine(_judge_all(caller, jobs, label))
    rows = [judgement_row(p, j, d) for (p, j), d in zip(jobs, judged)]
    answered = [d.result for d in judged if d.result.ok]
    return CalibrationRun(rows=rows, stats=stats, panel=panel, endpoint=caller.endpoint_id, answered=len(answered),
                          answered_by_standin=sum(bool(r.standin) for r in answered))
