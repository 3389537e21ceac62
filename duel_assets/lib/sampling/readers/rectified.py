"""SERA "cleaned-rectified" rows (roles reasoning / tool_call / tool_output / answer)."""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ...turn import BadRecord, Trajectory
from .common import decode_messages, digest, require_assistant, require_object, role_skip_reason, text, tool_specs
from .provenance import HIDDEN_ROW_KEYS, hidden_of, license_of, reward_of, source_meta
from .scaffolds import SWE_AGENT_TOOLS

_TAG_BODY = {tag: re.compile(rf"\A\s*<{tag}>(.*?)(?:</{tag}>)?\s*\Z", re.DOTALL) for tag in ("tool_call", "tool_response", "answer")}
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def _inner(tag: str, content: str) -> str:
    m = _TAG_BODY[tag].match(content or "")
    return m.group(1).strip() if m else (content or "").strip()


def _tools_from_system(system: str) -> list[dict] | None:
    m = _TOOLS_BLOCK.search(system or "")
    if not m:
        return None
    tools = []
    for line in m.group(1).splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                tools.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    try:
        return tool_specs(tools, SWE_AGENT_TOOLS) if tools else None
    except BadRecord:
        return None


def _converted(raw: list, skips: Counter) -> list[dict]:
    messages: list[dict] = []
    pending = ""
    last_call = None
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise BadRecord("invalid_message", f"message {i} has no role")
        role, content = m["role"], text(m.get("content"))
        if role in ("system", "user"):
            messages.append({"role": role, "content": content})
        elif role == "reasoning":
            pending = (pending + "\n" + content).strip()
        elif role == "tool_call":
            try:
                call = json.loads(_inner("tool_call", content))
            except json.JSONDecodeError:
                raise BadRecord("invalid_tool_call_json", f"message {i}") from None
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise BadRecord("invalid_tool_call", f"message {i}")
            last_call = f"call_{len(messages)}"
            args = call.get("arguments", {})
            messages.append({"role": "assistant", "content": pending, "tool_calls": [{
                "id": last_call, "type": "function",
                "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}}]})
            pending = ""
        elif role == "tool_output":
            messages.append({"role": "tool", "content": _inner("tool_response", content), "tool_call_id": last_call})
        elif role == "answer":
            messages.append({"role": "assistant", "content": (pending + "\n" + _inner("answer", content)).strip()})
            pending = ""
        else:
            skips[role_skip_reason(role)] += 1
    return messages


def read_sera_rectified(row: Any) -> Trajectory:
    """Roles system / user / reasoning / tool_call / tool_output / answer, wrapped in <think>,
    <tool_call>{json}</tool_call>, <tool_response>, <answer> tags; converted to OpenAI
    tool-calling messages (reasoning text goes with the call it precedes). Other roles are dropped
    and counted."""
    row = require_object(row)
    skips: Counter = Counter()
    messages = require_assistant(_converted(decode_messages(row.get("messages")), skips))
    instance_id = row.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        instance_id = f"sera-{digest(messages)}"
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    return Trajectory(
        traj_id=f"{instance_id}-{digest(messages)}", instance_id=instance_id, repo=None, source="sera_rectified",
        protocol="tool_calls", messages=messages, tools=_tools_from_system(system) or SWE_AGENT_TOOLS,
        outcome="submitted" if messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls") else "incomplete",
        reward=reward_of(row), license=license_of(row), hidden=hidden_of(row), skips=skips,
        source_meta=source_meta(row, ("instance_id", "messages", "license", "reward", *HIDDEN_ROW_KEYS)),
    )
