"""King and challenger answers: what to ask, and the row each reply becomes."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..calls import CallRequest, CallResult
from ..settings import ChainConfig
from ..turn import Turn
from . import messages
from .leakage import leak_evidence
from .protocol import check_answer

# why a turn is not dueled at all (answer rows carry it; the verdict and report count it)
EXCLUDED_INSTANCE = "excluded_instance"
NO_HIDDEN_INFO = "no_hidden_info"
KING_MALFORMED = "king_malformed"


def generation_params(cfg: ChainConfig, with_tools: bool = False) -> dict:
    params: dict = {"temperature": cfg.generation.temperature, "max_tokens": cfg.generation.max_tokens}
    if with_tools:  # the API's default said outright: some servers offer tool calls only when asked
        params["tool_choice"] = "auto"
    return params


@dataclass
class Planned:
    turn: Turn
    request: CallRequest | None
    skip_reason: str | None = None
    excluded_reason: str | None = None


def hidden_info_missing(pr: dict | None) -> bool:
    return not pr or bool(pr.get("missing"))


def when_missing(cfg: ChainConfig) -> str:
    """``exclude`` (default) or ``duel``: what DUEL_MODE 2 does with a turn without hidden information."""
    return cfg.hidden_info.when_missing


def plan_generation(role: str, turns: list[Turn], cfg: ChainConfig, prs: dict[str, dict] | None = None, mode: int = 2,
                    sample_index: int = 0) -> list[Planned]:
    excluded = set(cfg.excluded_instance_ids)
    prs = prs or {}
    out = []
    for t in turns:
        if t.excluded_reason:  # contaminated: matches a benchmark whose policy is drop
            out.append(Planned(t, None, t.excluded_reason, t.excluded_reason))
            continue
        if t.instance_id in excluded:
            out.append(Planned(t, None, "excluded_instance_id", EXCLUDED_INSTANCE))
            continue
        if mode == 2 and when_missing(cfg) == "exclude" and hidden_info_missing(prs.get(t.instance_id)):
            out.append(Planned(t, None, "no hidden information for this turn", NO_HIDDEN_INFO))
            continue
        if role == "king" and mode == 1:
            out.append(Planned(t, None, "duel_mode_1_uses_reference"))
            continue
        msgs = messages.king_messages(t) if role == "king" else messages.challenger_messages(t, prs.get(t.instance_id))
        params = generation_params(cfg, with_tools=bool(t.tools))
        out.append(Planned(t, CallRequest(role=role, model=cfg.generation.model, messages=msgs, params=params,
                                          tools=messages.request_tools(t.tools), sample_index=sample_index,
                                          tag=t.turn_id)))
    return out


def resample(p: Planned, sample_index: int) -> Planned:
    """The same request as another sample (a distinct call: the sample index is in its key and body)."""
    r = p.request
    assert r is not None, f"{p.turn.turn_id}: only a planned call is sampled again ({p.skip_reason})"
    return Planned(p.turn, CallRequest(r.role, r.model, r.messages, r.params, r.tools, sample_index, r.tag))


def history_text(turn: Turn) -> str:
    return "\n".join((m.get("content") or "") + json.dumps(m.get("tool_calls") or "") for m in turn.history)


def answer_row(role: str, p: Planned, r: CallResult | None, prs: dict[str, dict] | None = None) -> dict:
    t = p.turn
    sample = p.request.sample_index if p.request is not None else 0
    base = {"turn_id": t.turn_id, "instance_id": t.instance_id, "role": role, "sample_index": sample, "opponent": None,
            "excluded_reason": p.excluded_reason}
    if p.request is None or r is None:
        return {**base, "model": None, "format_ok": False, "format_reason": "not_generated",
                "error_kind": "skipped", "error": p.skip_reason, "cached": False, "attempts": 0}
    row: dict[str, Any] = {**base, "model": p.request.model, "call_key": r.key, "cached": r.cached, "attempts": r.attempts,
           "served_model": r.served_model, "standin": r.standin}
    if not r.ok:
        row.update(format_ok=False, format_reason="call_failed", error_kind=r.error_kind, error=r.error)
    else:
        check = check_answer(t.protocol, r.content, r.tool_calls, t.tools)
        reason = check.reason
        if check.ok and r.finish_reason == "length":
            reason = "truncated_length"
        row.update(
            content=r.content, reasoning=r.reasoning, tool_calls=r.tool_calls, action=check.action,
            format_ok=check.ok and reason is None, format_reason=reason, finish_reason=r.finish_reason,
            prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens, cached_tokens=r.cached_tokens,
            usage_estimated=r.usage_estimated,  # the endpoint sent no usage: the tokens are estimated from the text
            usage=None if r.usage_missing else {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                                                "cached_tokens": r.cached_tokens},
        )
    if role == "challenger":
        pr = (prs or {}).get(t.instance_id) or {}
        ev = leak_evidence(messages.render_answer(row.get("content"), row.get("tool_calls")), history_text(t), pr.get("patch")) if r.ok else []
        row.update(leak_suspect=bool(ev), leak_evidence=ev)
    return row


def malformed(row: dict) -> bool:
    """A reply that came back but breaks the protocol (worth another sample); a failed call is not."""
    return not row.get("format_ok") and not row.get("error_kind")


def same_action(king: dict | None, challenger: dict | None) -> bool:
    """Both answers are well formed and take the same action (the same command, or the same tool call
    with the same arguments): nothing for the judges to tell apart."""
    if not king or not challenger or not king.get("format_ok") or not challenger.get("format_ok"):
        return False
    a, b = (king.get("action") or "").strip(), (challenger.get("action") or "").strip()
    return bool(a) and a == b
