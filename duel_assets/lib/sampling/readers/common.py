"""The canonical trajectory shape and the message helpers every reader shares.

Messages are normalised to OpenAI chat dicts: ``{"role", "content"}`` plus ``tool_calls`` /
``tool_call_id`` on the scaffolds that have them, and ``reasoning_content`` on assistant messages
whose provider returned the reasoning apart from the text.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any

from ...duel import protocol as proto
from ...turn import BadRecord

CHAT_ROLES = ("system", "user", "assistant", "tool")
_ROLE_NAME = re.compile(r"\A[a-z_]{1,20}\Z")


def digest(messages: list[dict], n: int = 12) -> str:
    """A stable id for a trajectory's messages, hashed field by field (no JSON rendering)."""
    h = hashlib.sha1()
    for m in messages:
        h.update(m["role"].encode())
        h.update(b"\0")
        h.update((m.get("content") or "").encode("utf-8", "surrogatepass"))
        if m.get("tool_calls"):
            h.update(json.dumps(m["tool_calls"], sort_keys=True).encode())
        h.update(b"\1")
    return h.hexdigest()[:n]


def decode_messages(raw: Any) -> list:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadRecord("invalid_messages_json", str(e)[:80]) from None
    if hasattr(raw, "tolist"):  # numpy arrays from parquet
        raw = raw.tolist()
    if not isinstance(raw, list):
        raise BadRecord("messages_not_a_list", type(raw).__name__)
    if not raw:
        raise BadRecord("empty_messages")
    return raw


def text(content: Any) -> str:
    """Content may be a string or a list of parts ({type: text, text})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise BadRecord("invalid_content_type", type(content).__name__)


def tool_call(tc: Any, i: int) -> dict:
    if not isinstance(tc, dict):
        raise BadRecord("invalid_tool_call", f"tool call {i} is not an object")
    fn = tc["function"] if isinstance(tc.get("function"), dict) else tc
    name, args = fn.get("name"), fn.get("arguments", "{}")
    if not isinstance(name, str) or not name:
        raise BadRecord("invalid_tool_call", f"tool call {i} has no name")
    if isinstance(args, (dict, list)):
        args = json.dumps(args, ensure_ascii=False)
    if not isinstance(args, str):
        raise BadRecord("invalid_tool_call", f"tool call {i} arguments are {type(args).__name__}")
    return {"id": str(tc.get("id") or f"call_{i}"), "type": "function", "function": {"name": name, "arguments": args}}


def role_skip_reason(role: Any) -> str:
    """The counted reason for a message whose role is not a chat role (``exit``, ``critic``, ...)."""
    return f"skipped_role_{role}" if isinstance(role, str) and _ROLE_NAME.match(role) else "skipped_role_other"


def chat_messages(raw: list, skips: Counter | None = None) -> list[dict]:
    """OpenAI chat messages: role, content (text), tool_calls and reasoning_content on assistant,
    tool_call_id on tool. Messages of other roles (mini-swe-agent's final ``exit``) are dropped
    and counted in ``skips``; the rest of the trajectory is kept."""
    out = []
    n_calls = 0
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise BadRecord("invalid_message", f"message {i} has no role")
        role = m["role"]
        if role not in CHAT_ROLES:
            if skips is not None:
                skips[role_skip_reason(role)] += 1
            continue
        msg: dict = {"role": role, "content": text(m.get("content"))}
        if role == "assistant":
            if m.get("tool_calls"):
                calls = m["tool_calls"]
                if not isinstance(calls, list):
                    raise BadRecord("invalid_tool_call", f"message {i} tool_calls is {type(calls).__name__}")
                msg["tool_calls"] = [tool_call(tc, n_calls + j) for j, tc in enumerate(calls)]
                n_calls += len(calls)
            if isinstance(m.get("reasoning_content"), str) and m["reasoning_content"].strip():
                msg["reasoning_content"] = m["reasoning_content"]
        if role == "tool":
            ids = m.get("tool_call_ids")
            tcid = m.get("tool_call_id") or (ids[0] if isinstance(ids, list) and ids else None)
            msg["tool_call_id"] = str(tcid) if tcid else None
        out.append(msg)
    return out


def split_parallel_calls(messages: list[dict]) -> list[dict]:
    """An assistant message with k tool calls becomes k single-call steps, each followed by its own
    tool reply; the text goes with the first call. Every step is then one action."""
    out: list[dict] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        calls = m.get("tool_calls") or []
        if m["role"] != "assistant" or len(calls) <= 1:
            out.append(m)
            i += 1
            continue
        j = i + 1
        replies: list[dict] = []
        while j < len(messages) and messages[j]["role"] == "tool":
            replies.append(messages[j])
            j += 1
        by_id = {r.get("tool_call_id"): r for r in replies}
        used = set()
        for k, call in enumerate(calls):
            step = {"role": "assistant", "content": m["content"] if k == 0 else "", "tool_calls": [call]}
            if k == 0 and m.get("reasoning_content"):
                step["reasoning_content"] = m["reasoning_content"]
            out.append(step)
            reply = by_id.get(call["id"])
            if reply is None and k < len(replies) and id(replies[k]) not in used:
                reply = replies[k]
            if reply is not None:
                used.add(id(reply))
                out.append({**reply, "tool_call_id": call["id"]})
        out.extend(r for r in replies if id(r) not in used)
        i = j
    return out


def tool_specs(raw: Any, default: list[dict] | None) -> list[dict] | None:
    """Tool schemas as OpenAI function specs; ``default`` when the row has none."""
    if raw is None or (hasattr(raw, "__len__") and len(raw) == 0):
        return default
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise BadRecord("invalid_tools_json") from None
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    if not isinstance(raw, list):
        raise BadRecord("invalid_tools", type(raw).__name__)
    tools = []
    for t in raw:
        if isinstance(t, str):
            try:
                t = json.loads(t)
            except json.JSONDecodeError:
                raise BadRecord("invalid_tools_json") from None
        if not isinstance(t, dict):
            raise BadRecord("invalid_tools", "tool spec is not an object")
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not fn.get("name"):
            raise BadRecord("invalid_tools", "tool spec without a name")
        tools.append({"type": "function", "function": {k: fn[k] for k in ("name", "description", "parameters") if k in fn}})
    return tools


def ends_with_submit(messages: list[dict]) -> bool:
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if not last:
        return False
    if last.get("tool_calls"):
        return last["tool_calls"][-1]["function"]["name"] in proto.SUBMIT_TOOLS
    check = proto.check_bash_block(last.get("content"))
    return check.ok and proto.is_submit_command(check.action)


def outcome_of(exit_status: Any) -> str:
    s = str(exit_status or "").strip().lower()
    if s == "submitted":
        return "submitted"
    if s in ("incomplete", "limitsexceeded", "timeexceeded") or s.startswith(("submitted (", "exit_")):
        return "incomplete"  # SWE-agent's "submitted (exit_cost)" is an automatic submission at a limit
    if s in ("errored", "error") or s.endswith("error"):
        return "error"
    return "unknown"


def require_str(row: dict, key: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v:
        raise BadRecord(f"missing_{key}")
    return v


def require_object(row: Any) -> dict:
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    return row


def require_assistant(messages: list[dict]) -> list[dict]:
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    return messages


def optional_str(row: dict, key: str) -> str | None:
    v = row.get(key)
    return v if isinstance(v, str) and v else None
