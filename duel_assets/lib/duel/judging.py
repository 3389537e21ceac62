"""Judge calls: what each judge is asked, and the row each judgement becomes."""
from __future__ import annotations

from dataclasses import dataclass

from ..calls import CallRequest, CallResult, CallStats
from ..settings import METRICS, ChainConfig
from ..turn import Turn
from ..verdict.replies import CHALLENGER_FIRST, KING_FIRST, JudgeReply, challenger_margins, parse_judge_reply, side_scores, sides
from . import messages
from .answers import same_action

IDENTICAL = "identical_answers"
DECIDED = "decided_without_this_judge"


def reply_schema() -> dict:
    """The JSON schema of a judge's reply (what :func:`..verdict.replies.parse_judge_reply` reads)."""
    side = {"type": "integer", "minimum": 0, "maximum": 10}
    metric = {"type": "object", "properties": {"A": side, "B": side}, "required": ["A", "B"], "additionalProperties": False}
    scores = {"type": "object", "properties": {m: metric for m in METRICS}, "required": list(METRICS),
              "additionalProperties": False}
    return {"type": "object", "additionalProperties": False, "required": ["scores", "winner", "reason"],
            "properties": {"scores": scores, "winner": {"type": "string", "enum": ["A", "B", "tie"]},
                           "reason": {"type": "string"}}}


def reply_format(structured) -> dict | None:
    """``response_format`` for ``judges.structured``: ``json_schema`` with the reply's schema, marked
    ``strict`` when structured output is required (``true``: never asked in free text); None for ``false``."""
    if structured is False:
        return None
    schema = {"name": "judge_reply", "schema": reply_schema(), **({"strict": True} if structured is True else {})}
    return {"type": "json_schema", "json_schema": schema}


def judge_params(cfg: ChainConfig, judge: str, with_tools: bool = False) -> dict:
    params: dict = {"temperature": cfg.judges.temperature, "max_tokens": cfg.judges.token_limits.get(judge, cfg.judges.max_tokens)}
    if with_tools:  # the turn's tools stay in the shared prefix; the judge answers in text
        params["tool_choice"] = "none"
    rf = reply_format(cfg.judges.structured)
    if rf is not None:
        params["response_format"] = rf
    return params


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


def skip_reason(t: Turn, king_row: dict | None, chal_row: dict | None, mode: int) -> str | None:
    """Why the turn gets no judge call at all, or None."""
    for row in (king_row, chal_row):
        if row and row.get("excluded_reason"):
            return row["excluded_reason"]
    if _failed(chal_row):
        return "challenger_missing"
    if mode == 2 and _failed(king_row):
        return "king_missing"
    if mode == 2 and same_action(king_row, chal_row):
        return IDENTICAL
    return None


def judge_jobs_for_turn(t: Turn, king_row: dict | None, chal_row: dict | None, pr: dict | None, cfg: ChainConfig,
                        mode: int = 2) -> list[JudgeJob]:
    orders = [KING_FIRST, CHALLENGER_FIRST] if cfg.judges.position_swap else [KING_FIRST]
    opponent = "reference" if mode == 1 else "king"
    skip = skip_reason(t, king_row, chal_row, mode)
    jobs = []
    if skip is None:
        opp = t.reference if mode == 1 else king_row
        assert opp is not None and chal_row is not None  # skip_reason names a missing answer
        opp_text = messages.render_answer(opp.get("content"), opp.get("tool_calls"))
        chal_text = messages.render_answer(chal_row.get("content"), chal_row.get("tool_calls"))
    for judge in cfg.judges.models:
        for order in orders:
            if skip:
                jobs.append(JudgeJob(t.turn_id, judge, order, opponent, None, skip))
                continue
            a, b = (opp_text, chal_text) if order == KING_FIRST else (chal_text, opp_text)
            msgs = messages.judge_messages(t, pr, a, b, cfg.judges.max_history_chars)
            req = CallRequest("judge", judge, msgs, judge_params(cfg, judge, bool(t.tools)), tools=messages.request_tools(t.tools),
                              tag=f"{t.turn_id}|{judge}|{order}")
            jobs.append(JudgeJob(t.turn_id, judge, order, opponent, req))
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
    req = job.request
    assert req is not None, f"{job.turn_id}: a skipped job ({job.skip_reason}) is never judged"
    r = await call(req, stats)
    rep = _parse(r, "call")
    if not (r.ok and not rep.parsed):
        return Judged(r, rep, False)
    msgs = [*req.messages, *messages.judge_retry_messages(r.content, rep.error or "unparseable")]
    r2 = await call(CallRequest("judge", req.model, msgs, req.params, tools=req.tools, tag=req.tag + "|retry"), stats)
    return Judged(r2, _parse(r2, "retry call"), True)


def margins_of_reply(content: str | None, order: str) -> dict[str, int] | None:
    """The challenger's per-metric margins in a judge's reply text (None when it does not parse)."""
    return challenger_margins(parse_judge_reply(content), order)


def margins(judged: Judged | None, order: str) -> dict[str, int] | None:
    """The challenger's per-metric margins in one parsed judgement (None when it did not parse)."""
    return None if judged is None else challenger_margins(judged.reply, order)


def judge_row(job: JudgeJob, judged: Judged | None) -> dict:
    row = {"turn_id": job.turn_id, "judge": job.judge, "order": job.order, "opponent": job.opponent, "retried": False}
    if job.request is None or judged is None:
        row.update(parsed=False, parse_error=f"not judged: {job.skip_reason}", error_kind="skipped", error=job.skip_reason)
        return row
    r, rep = judged.result, judged.reply
    row.update(parsed=rep.parsed, parse_error=rep.error, retried=judged.retried, raw_reply=r.content,
               reason=rep.reason, call_key=r.key, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
               cached_tokens=r.cached_tokens, usage_estimated=r.usage_estimated, served_model=r.served_model, standin=r.standin,
               error_kind=r.error_kind, error=r.error, reply_format=r.reply_format or ("text" if r.ok else None))
    if rep.parsed:
        row.update(side_scores(rep, job.order))
        c_side, o_side = sides(job.order)
        row["winner"] = {c_side: "challenger", o_side: "opponent", "tie": "tie"}.get(rep.winner or "", None)
    return row


def parse_rates(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Parsed judgements per judge and per reply format (json_schema, json_object, text; "no reply"
    for failed calls): ``{judge: {format: {"judged": n, "parsed": k, "rate": k / n}}}``. Judgements
    not asked (skipped) are left out."""
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r.get("error_kind") == "skipped":
            continue
        cell = out.setdefault(str(r.get("judge")), {}).setdefault(r.get("reply_format") or "no reply",
                                                                  {"judged": 0, "parsed": 0})
        cell["judged"] += 1
        cell["parsed"] += int(bool(r.get("parsed")))
    for formats in out.values():
        for cell in formats.values():
            cell["rate"] = round(cell["parsed"] / cell["judged"], 4)
    return out
