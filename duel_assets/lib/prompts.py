"""Prompt rendering from the template files in ``duel_assets/prompts``. No Dagster imports.

Templates use ``string.Template`` placeholders (``${name}``); substituted values are never
re-interpreted, so a ``$`` inside trajectory text is harmless. Trajectory and PR text that goes
inside a delimited block has the delimiter tags neutralised so it cannot close the block early.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from string import Template

from .protocol import render_tool_call, split_reasoning
from .trajectories import Turn, trim_text

DATA_TAGS = ("task_history", "reference_pr_record", "answer_A", "answer_B", "hidden_pr_record")
_TAG_RE = re.compile(r"<(/?)(" + "|".join(DATA_TAGS) + r")\b", re.IGNORECASE)


@lru_cache(maxsize=None)
def template(name: str) -> Template:
    return Template((resources.files("duel_assets") / "prompts" / f"{name}.md").read_text(encoding="utf-8"))


def render(name: str, **values: str) -> str:
    return template(name).substitute(**values).strip()


def as_data(text: str | None) -> str:
    """Neutralise our own delimiter tags inside untrusted text."""
    return _TAG_RE.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}", text or "")


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
    return as_data("\n\n".join(parts))


def _system_and_rest(turn: Turn) -> tuple[str, list[dict]]:
    hist = turn.history
    if hist and hist[0].get("role") == "system":
        return hist[0].get("content") or "", hist[1:]
    return "", hist


def _chat_message(m: dict) -> dict:
    out = {"role": m["role"], "content": m.get("content") or ""}
    if m.get("tool_calls"):
        out["tool_calls"] = m["tool_calls"]
    if m["role"] == "tool":
        out["tool_call_id"] = m.get("tool_call_id") or "call_0"
    return out


def king_messages(turn: Turn) -> list[dict]:
    original, rest = _system_and_rest(turn)
    system = render("king_system", original_system=original, protocol_rules=render(f"protocol_{turn.protocol}"))
    return [{"role": "system", "content": system}, *(_chat_message(m) for m in rest)]


def challenger_messages(turn: Turn, pr: dict | None) -> list[dict]:
    original, rest = _system_and_rest(turn)
    system = render("challenger_system", original_system=original,
                    protocol_rules=render(f"protocol_{turn.protocol}"), pr_record=pr_record_text(pr))
    return [{"role": "system", "content": system}, *(_chat_message(m) for m in rest)]


def render_answer(content: str | None, tool_calls: list | str | None) -> str:
    """An answer as the judges read it: its text, then its tool call (if any) spelled out."""
    if isinstance(tool_calls, str):
        tool_calls = json.loads(tool_calls) if tool_calls else None
    text = split_reasoning(content)[1]
    calls = [render_tool_call((c.get("function") or {}).get("name", "?"), (c.get("function") or {}).get("arguments", ""))
             for c in tool_calls or []]
    body = text + ("\n\n" if text and calls else "") + "\n".join(f"[tool call] {c}" for c in calls)
    return as_data(body or "(empty answer)")


def render_history(turn: Turn, max_chars: int) -> str:
    lines = []
    for m in turn.history:
        body = m.get("content") or ""
        if m.get("tool_calls"):
            body += "\n" + "\n".join(
                f"[tool call] {render_tool_call((c.get('function') or {}).get('name', '?'), (c.get('function') or {}).get('arguments', ''))}"
                for c in m["tool_calls"])
        lines.append(f"[{m['role']}]\n{body.strip()}")
    text = "\n\n".join(lines)
    return as_data(trim_text(text, max_chars))


def judge_messages(turn: Turn, pr: dict | None, answer_a: str, answer_b: str, max_history_chars: int) -> list[dict]:
    user = render("judge_user", history=render_history(turn, max_history_chars), pr_record=pr_record_text(pr),
                  answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": render("judge_system")}, {"role": "user", "content": user}]


def judge_retry_message(error: str) -> dict:
    return {"role": "user", "content": render("judge_retry", error=error)}
