"""The messages of every LLM request, rendered from the template files in
``duel_assets/templates/messages``.

Every request about one turn starts with the same bytes, so providers that cache prompt prefixes
serve the long shared part from cache: the trajectory's own system prompt and its history (as chat
messages, with the trajectory's tools), then — for the challenger and the judges — the PR record,
and only then what differs: the role's instructions, the answers being judged, their order.

Templates use ``string.Template`` placeholders (``${name}``); substituted values are never
re-interpreted, so a ``$`` inside trajectory text is harmless. All untrusted text (histories, the
system prompt, the trajectory's tools, PR records, answers, a judge's own reply sent back on retry)
has our delimiter tags defused (:mod:`.delimiters`), the same way for every role, so the shared
prefix stays shared.
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from string import Template

from ..sampling.trim import trim_history, trim_text
from ..turn import Turn
from .delimiters import neutralise, neutralise_json
from .protocol import render_tool_call, split_reasoning


@cache
def template(name: str) -> Template:
    return Template((resources.files("duel_assets") / "templates" / "messages" / f"{name}.md").read_text(encoding="utf-8"))


def render(name: str, **values: str) -> str:
    return template(name).substitute(**values).strip()


def pr_record_text(pr: dict | None, patch_chars: int = 12_000) -> str:
    if not pr or pr.get("missing"):
        return "(no PR record available for this task)"
    files = pr.get("changed_files") or "[]"
    if isinstance(files, str):
        files = json.loads(files)
    parts = [
        f"Repository: {pr.get('repo') or 'unknown'}",
        f"Problem statement:\n{pr.get('problem_statement') or ''}",
        f"PR description:\n{pr.get('pr_description') or ''}",
        "Changed files:\n" + "\n".join(f"- {f}" for f in files),
        f"Patch:\n{trim_text(pr.get('patch') or '', patch_chars)}",
    ]
    return neutralise("\n\n".join(parts))


def _chat_message(m: dict) -> dict:
    out = {"role": m["role"], "content": neutralise(m.get("content") or "")}
    if m.get("tool_calls"):
        out["tool_calls"] = [neutralise_json({**c, "function": {**c["function"], "arguments": c["function"].get("arguments") or ""}})
                             if isinstance(c.get("function"), dict) else neutralise_json(c) for c in m["tool_calls"]]
    if m["role"] == "tool":
        out["tool_call_id"] = neutralise(m.get("tool_call_id") or "call_0")
    return out


def request_tools(tools: list[dict] | None) -> list[dict] | None:
    """The trajectory's tools as every request about the turn carries them: names, descriptions and
    parameter schemas are untrusted text too."""
    return neutralise_json(tools) if tools else tools


def shared_prefix(turn: Turn, max_history_chars: int = 0) -> list[dict]:
    """The bytes every request about ``turn`` starts with: its own system prompt and history.
    ``max_history_chars`` > 0 trims the history further (by the sampler's rules), at the cost of
    the shared prefix."""
    history = turn.history
    if max_history_chars and sum(len(m.get("content") or "") for m in history) > max_history_chars:
        history, _ = trim_history(history, max_history_chars, max_history_chars)
    return [_chat_message(m) for m in history]


def _rules(turn: Turn) -> str:
    return render(f"protocol_{turn.protocol}")


def pr_message(pr: dict | None) -> dict:
    return {"role": "user", "content": render("pr_record", pr_record=pr_record_text(pr))}


def king_messages(turn: Turn) -> list[dict]:
    return [*shared_prefix(turn), {"role": "user", "content": render("king_turn", protocol_rules=_rules(turn))}]


def challenger_messages(turn: Turn, pr: dict | None) -> list[dict]:
    return [*shared_prefix(turn), pr_message(pr),
            {"role": "user", "content": render("challenger_turn", protocol_rules=_rules(turn))}]


def render_answer(content: str | None, tool_calls: list | str | None) -> str:
    """An answer as the judges read it: its text, then its tool call (if any) spelled out."""
    if isinstance(tool_calls, str):
        tool_calls = json.loads(tool_calls) if tool_calls else None
    text = split_reasoning(content)[1]
    calls = [render_tool_call((c.get("function") or {}).get("name", "?"), (c.get("function") or {}).get("arguments", ""))
             for c in tool_calls or []]
    body = text + ("\n\n" if text and calls else "") + "\n".join(f"[tool call] {c}" for c in calls)
    return neutralise(body or "(empty answer)")


def judge_messages(turn: Turn, pr: dict | None, answer_a: str, answer_b: str, max_history_chars: int = 0) -> list[dict]:
    """The judge's request: the turn's shared prefix and PR record, the rubric (the same for every
    judge call of the turn), then both answers in this call's order."""
    rubric = render("judge_turn", protocol_rules=_rules(turn))
    answers = render("judge_answers", answer_a=answer_a, answer_b=answer_b)
    return [*shared_prefix(turn, max_history_chars), pr_message(pr), {"role": "user", "content": rubric},
            {"role": "user", "content": answers}]


def judge_retry_messages(reply: str | None, error: str) -> list[dict]:
    """What a judge's retry adds to its request: its own reply (untrusted, defused like any answer)
    and why it could not be used."""
    return [{"role": "assistant", "content": neutralise(reply or "")},
            {"role": "user", "content": render("judge_retry", error=neutralise(error))}]
