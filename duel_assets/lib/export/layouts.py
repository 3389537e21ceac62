"""A training row's messages in the ``openai`` or the ``source`` layout.

The visible history comes first; the challenger's answer (the duel's winner) is the target. Each
encoder returns ``(messages, tools, target_index)``: ``messages[target_index:]`` is the target and
only those messages carry ``train = true``.

``openai``: native OpenAI chat messages ``{role, content, reasoning_content, tool_calls,
tool_call_id, name, train}``; a ``<think>`` block inside an assistant message's content becomes its
``reasoning_content``; ``tools`` is a list whose function ``parameters`` (a JSON Schema, different
for every tool) is kept as JSON text so that one parquet schema holds every shard.

``source``: ``messages`` and ``tools`` are JSON text in the encoding of the turn's source format
(``SOURCE_ENCODINGS``); the project's readers (``lib/sampling/readers/``) read such a row back.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..duel import protocol

SOURCE_ENCODINGS = {
    "coderforge": "CoderForge-Preview: OpenAI chat messages (`tool_calls` with JSON-string `arguments`, tool "
                  "replies with `tool_call_id`) and the tool specs, each column a JSON string",
    "mini_swe_agent": "mini-swe-agent `.traj.json` messages: `{role, content}` for the text protocol, OpenAI "
                      "`tool_calls` / `tool` replies for its tool-calling version, as a JSON string",
    "swe_zero": "SWE-ZERO rows: a list of `{role, content}` (the mini-swe-agent text protocol), as a JSON string",
    "sera": "raw SERA (SWE-agent function calling): assistant messages with `content`, `thought` and `tool_calls`, "
            "tool replies naming their call in `tool_call_ids`, reasoning as `<think>` blocks inside the content",
    "sera_rectified": "SERA cleaned-rectified: roles `system`, `user`, `reasoning` (`<think>…</think>`), "
                      "`tool_call` (`<tool_call>{\"name\", \"arguments\": {…}}</tool_call>`), `tool_output` "
                      "(`<tool_response>…</tool_response>`) and `answer` (`<answer>…</answer>`)",
}


def split_reasoning(content: str | None) -> tuple[str | None, str]:
    """(the reasoning of any ``<think>`` block, the content without it); content without a
    ``<think>`` block is returned as it is. The rule is the protocol checker's."""
    content = content or ""
    if "<think>" not in content.lower():
        return None, content
    reasoning, rest = protocol.split_reasoning(content)
    return reasoning or None, rest


def _calls(calls) -> list[dict] | None:
    if not calls:
        return None
    return [{"id": c.get("id") or f"call_{i}", "type": "function",
             "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
            for i, c in enumerate(calls)]


def _target(chal: dict, keep: bool) -> tuple[str | None, str]:
    """(reasoning, content) of the challenger's answer for the ``openai`` layout: the reasoning the
    provider returned apart plus any ``<think>`` block of the content."""
    inline, content = split_reasoning(chal.get("content"))
    parts = [p for p in ((chal.get("reasoning") or "").strip(), inline) if p]
    return ("\n\n".join(parts) if parts and keep else None), content


def _source_target(chal: dict, keep: bool) -> tuple[str | None, str]:
    """(reasoning, content) for a ``source`` layout: the content as the model wrote it (``<think>``
    blocks removed when reasoning is dropped) and the reasoning the provider returned apart."""
    reasoning = (chal.get("reasoning") or "").strip() or None
    return (reasoning if keep else None), _strip(chal.get("content"), keep)


# ---------------------------------------------------------------- openai


def openai_tools(tools: list[dict] | None) -> list[dict] | None:
    if not tools:
        return None
    out = []
    for t in tools:
        fn = t.get("function", t)
        params = fn.get("parameters")
        out.append({"type": "function", "function": {
            "name": fn.get("name"), "description": fn.get("description"),
            "parameters": None if params is None else json.dumps(params, ensure_ascii=False)}})
    return out


def openai_layout(turn: dict, chal: dict, keep: bool) -> tuple[list[dict], list[dict] | None, int]:
    msgs = []
    for m in turn["history"]:
        reasoning, content = (None, m.get("content") or "")
        if m["role"] == "assistant":
            reasoning, content = split_reasoning(content)
        msgs.append({"role": m["role"], "content": content, "reasoning_content": reasoning if keep else None,
                     "tool_calls": _calls(m.get("tool_calls")), "tool_call_id": m.get("tool_call_id"),
                     "name": m.get("name"), "train": False})
    reasoning, content = _target(chal, keep)
    msgs.append({"role": "assistant", "content": content, "reasoning_content": reasoning,
                 "tool_calls": _calls(chal.get("tool_calls")), "tool_call_id": None, "name": None, "train": True})
    return msgs, openai_tools(turn.get("tools")), len(msgs) - 1


# ---------------------------------------------------------------- source


def _strip(content: str | None, keep: bool) -> str:
    return (content or "") if keep else split_reasoning(content)[1]


def _chat_source(turn: dict, chal: dict, keep: bool) -> list[dict]:
    """OpenAI-style source messages (CoderForge, mini-swe-agent), keys only where the source has them."""
    msgs = []
    for m in turn["history"]:
        msg: dict[str, Any] = {"role": m["role"],
                               "content": _strip(m.get("content"), keep) if m["role"] == "assistant" else m.get("content") or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = _calls(m["tool_calls"])
        if m["role"] == "tool":
            msg["tool_call_id"] = m.get("tool_call_id")
        msgs.append(msg)
    reasoning, content = _source_target(chal, keep)
    target: dict[str, Any] = {"role": "assistant", "content": content}
    if chal.get("tool_calls"):
        target["tool_calls"] = _calls(chal["tool_calls"])
    if reasoning:
        target["reasoning_content"] = reasoning
    return msgs + [target]


def _sera_source(turn: dict, chal: dict, keep: bool) -> list[dict]:
    """Raw SERA: SWE-agent messages, reasoning inline as ``<think>``."""
    def assistant(content: str, calls) -> dict:
        msg: dict[str, Any] = {"role": "assistant", "content": content, "thought": content}
        if calls:
            msg["tool_calls"] = _calls(calls)
        return msg

    msgs = []
    for m in turn["history"]:
        if m["role"] == "assistant":
            msgs.append(assistant(_strip(m.get("content"), keep), m.get("tool_calls")))
        elif m["role"] == "tool":
            msgs.append({"role": "tool", "content": m.get("content") or "", "tool_call_ids": [m.get("tool_call_id")]})
        else:
            msgs.append({"role": m["role"], "content": m.get("content") or ""})
    reasoning, content = _source_target(chal, keep)
    text = f"<think>{reasoning}</think>\n\n{content}".strip() if reasoning else content
    return msgs + [assistant(text, chal.get("tool_calls"))]


def _rectified_step(content: str, calls, keep: bool) -> list[dict]:
    """One assistant step as SERA-rectified messages: its text as a ``reasoning`` message (only when
    reasoning is kept: in this encoding the text before an action is the reasoning), then the tool
    call, or the text as the ``answer`` when the step has no call."""
    if not calls:
        return [{"role": "answer", "content": f"<answer>{content}</answer>"}]
    out = [{"role": "reasoning", "content": content}] if keep and content.strip() else []
    for c in calls:
        fn = c["function"]
        try:
            args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
        except json.JSONDecodeError:
            args = fn["arguments"]
        out.append({"role": "tool_call",
                    "content": "<tool_call>" + json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False) + "</tool_call>"})
    return out


def _sera_rectified_source(turn: dict, chal: dict, keep: bool) -> list[dict]:
    msgs = []
    for m in turn["history"]:
        if m["role"] == "assistant":
            msgs += _rectified_step(_strip(m.get("content"), keep), m.get("tool_calls"), keep)
        elif m["role"] == "tool":
            msgs.append({"role": "tool_output", "content": f"<tool_response>{m.get('content') or ''}</tool_response>"})
        else:
            msgs.append({"role": m["role"], "content": m.get("content") or ""})
    reasoning, content = _source_target(chal, keep)
    text = "\n".join(p for p in (f"<think>{reasoning}</think>" if reasoning else "", content) if p)
    return msgs + [{**m, "train": True} for m in _rectified_step(text, chal.get("tool_calls"), keep)]


_SOURCE: dict[str, Callable[[dict, dict, bool], list[dict]]] = {
    "coderforge": _chat_source, "mini_swe_agent": _chat_source, "swe_zero": _chat_source,
    "sera": _sera_source, "sera_rectified": _sera_rectified_source,
}


def source_layout(turn: dict, chal: dict, keep: bool) -> tuple[str, str | None, int]:
    """Messages and tools as JSON text in the turn's source encoding (OpenAI-style for a source this
    table does not know)."""
    msgs = _SOURCE.get(turn.get("source") or "", _chat_source)(turn, chal, keep)
    n_target = sum(1 for m in msgs if m.get("train")) or 1
    target_index = len(msgs) - n_target
    msgs = [{**m, "train": i >= target_index} for i, m in enumerate(msgs)]
    tools = turn.get("tools")
    return json.dumps(msgs, ensure_ascii=False), (json.dumps(tools, ensure_ascii=False) if tools else None), target_index
