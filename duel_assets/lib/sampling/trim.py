"""Bounding what a history costs: one rule for source rows and prompt files.

Trimming is idempotent (trimming a trimmed history changes nothing), so a turn keeps its history
and its ``history_hash`` when it goes from a source row to a prompt file, to the warehouse and back.
"""
from __future__ import annotations

import json
import re

_MARKER = "[... {n} earlier steps trimmed to fit the context budget ...]"
_MARKER_RE = re.compile(r"\A\[\.\.\. (\d+) earlier steps trimmed to fit the context budget \.\.\.\]\Z")
_MARKER_MAX = len(_MARKER.format(n=10**9))


def trim_text(text: str, limit: int, what: str = "characters") -> str:
    """``text`` cut in the middle to at most ``limit`` characters, the cut marked."""
    if limit <= 0 or len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} {what} elided ...]\n"
    keep = max(limit - len(marker), 0)
    head = keep * 2 // 3
    tail = keep - head
    return (text[:head] + marker + (text[-tail:] if tail else ""))[:limit]


def _trim_arguments(arguments: str, limit: int) -> str:
    """Long string values inside tool-call arguments are trimmed; the arguments stay valid JSON."""
    if limit <= 0 or len(arguments) <= limit:
        return arguments
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError:
        return trim_text(arguments, limit)
    if not isinstance(args, dict) or not any(isinstance(v, str) and len(v) > limit for v in args.values()):
        return arguments
    return json.dumps({k: trim_text(v, limit) if isinstance(v, str) else v for k, v in args.items()}, ensure_ascii=False)


def _cap(m: dict, limit: int, arg_limit: int) -> dict:
    c = m.get("content") or ""
    out = m
    if limit > 0 and len(c) > limit:
        out = {**out, "content": trim_text(c, limit)}
    calls = m.get("tool_calls")
    if calls and arg_limit > 0:
        new = [{**tc, "function": {**tc["function"], "arguments": _trim_arguments(tc["function"].get("arguments") or "", arg_limit)}}
               if isinstance(tc.get("function"), dict) and isinstance(tc["function"].get("arguments"), str) else tc
               for tc in calls]
        if new != calls:
            out = {**out, "tool_calls": new}
    return out


def _size(msgs: list[dict]) -> int:
    return sum(len(m.get("content") or "") + (len(json.dumps(m["tool_calls"])) if m.get("tool_calls") else 0) for m in msgs)


def _steps(messages: list[dict]) -> list[list[dict]]:
    """Group messages into steps: an assistant message plus what follows it."""
    groups: list[list[dict]] = []
    for m in messages:
        if m["role"] == "assistant" or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return groups


def cap_message(m: dict, max_chars: int, max_obs_chars: int, observation: bool) -> dict:
    """One message bounded: an observation to ``max_obs_chars``; the system prompt, the task and
    the agent's own messages to half the history budget; tool-call argument values to
    ``max_obs_chars``."""
    own = max(max_obs_chars, max_chars // 2) if max_chars > 0 else 0
    return _cap(m, max_obs_chars if observation else own, max_obs_chars)


def trim_history(history: list[dict], max_chars: int, max_obs_chars: int) -> tuple[list[dict], bool]:
    """Cap every message, then drop whole middle steps; the head (system prompt and task, all that
    comes before the first step) is always kept, and so is the last step. Returns (history, whether anything changed)."""
    out = []
    seen_assistant = False
    for m in history:
        seen_assistant = seen_assistant or m["role"] == "assistant"
        out.append(cap_message(m, max_chars, max_obs_chars, m["role"] in ("user", "tool") and seen_assistant))
    changed = any(a is not b for a, b in zip(out, history))
    if max_chars <= 0 or _size(out) <= max_chars:
        return out, changed
    head_n = next((i for i, m in enumerate(out) if m["role"] == "assistant"), len(out))
    head, rest = out[:head_n], out[head_n:]  # the head: system prompt and task, up to the first step
    before = 0
    earlier = _MARKER_RE.match(head[-1].get("content") or "") if head and head[-1]["role"] == "user" else None
    if earlier:
        before = int(earlier.group(1))  # trimmed before: keep counting
        head = head[:-1]
    steps = _steps(rest)
    budget = max_chars - _size(head) - _MARKER_MAX
    kept: list[list[dict]] = []
    for g in reversed(steps):
        if _size(g) > budget and kept:
            break
        kept.insert(0, g)
        budget -= _size(g)
    dropped = before + len(steps) - len(kept)
    marker = [{"role": "user", "content": _MARKER.format(n=dropped)}] if dropped else []
    new = head + marker + [m for g in kept for m in g]
    return new, changed or new != history
