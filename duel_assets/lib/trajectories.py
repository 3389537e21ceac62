"""Trajectory readers into one canonical shape, and turn cutting. No Dagster imports.

A reader takes one source row (a dict) and returns a :class:`Trajectory` or raises
:class:`BadRecord` with a short reason code; callers count the codes, so one broken row never sinks
the rest. Messages are normalised to OpenAI chat dicts: ``{"role", "content"}`` plus
``tool_calls`` / ``tool_call_id`` / ``name`` where the scaffold has them.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from . import protocol as proto
from .scaffolds import MINI_SWE_AGENT_TOOLS, OPENHANDS_TOOLS, SWE_AGENT_TOOLS


class BadRecord(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Trajectory:
    traj_id: str
    instance_id: str
    repo: str | None
    source: str
    protocol: str
    messages: list[dict]
    tools: list[dict] | None = None
    outcome: str = "unknown"
    reward: float | None = None


@dataclass
class Turn:
    turn_id: str
    instance_id: str
    repo: str | None
    source: str
    traj_id: str
    step: int
    protocol: str
    history: list[dict]
    reference: dict
    tools: list[dict] | None = None
    outcome: str = "unknown"
    trimmed: bool = False
    extra: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        return {f: getattr(self, f) for f in TURN_FIELDS}  # shallow: histories are shared, not copied


TURN_FIELDS = ("turn_id", "instance_id", "repo", "source", "traj_id", "step", "protocol",
               "history", "reference", "tools", "outcome", "trimmed")


def _digest(messages: list[dict], n: int = 12) -> str:
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


def _decode_messages(raw: Any) -> list:
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


def _text(content: Any) -> str:
    """Content may be a string or a list of parts ({type: text, text})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise BadRecord("invalid_content_type", type(content).__name__)


def _tool_call(tc: Any, i: int) -> dict:
    if not isinstance(tc, dict):
        raise BadRecord("invalid_tool_call", f"tool call {i} is not an object")
    fn = tc.get("function") if isinstance(tc.get("function"), dict) else tc
    name, args = fn.get("name"), fn.get("arguments", "{}")
    if not isinstance(name, str) or not name:
        raise BadRecord("invalid_tool_call", f"tool call {i} has no name")
    if isinstance(args, (dict, list)):
        args = json.dumps(args, ensure_ascii=False)
    if not isinstance(args, str):
        raise BadRecord("invalid_tool_call", f"tool call {i} arguments are {type(args).__name__}")
    return {"id": str(tc.get("id") or f"call_{i}"), "type": "function", "function": {"name": name, "arguments": args}}


def _chat_messages(raw: list) -> list[dict]:
    """OpenAI chat messages: role, content (text), tool_calls on assistant, tool_call_id on tool."""
    out = []
    n_calls = 0
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise BadRecord("invalid_message", f"message {i} has no role")
        role = m["role"]
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRecord("unknown_role", str(role))
        msg: dict = {"role": role, "content": _text(m.get("content"))}
        if role == "assistant" and m.get("tool_calls"):
            calls = m["tool_calls"]
            if not isinstance(calls, list):
                raise BadRecord("invalid_tool_call", f"message {i} tool_calls is {type(calls).__name__}")
            msg["tool_calls"] = [_tool_call(tc, n_calls + j) for j, tc in enumerate(calls)]
            n_calls += len(calls)
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
            out.append({"role": "assistant", "content": m["content"] if k == 0 else "", "tool_calls": [call]})
            reply = by_id.get(call["id"])
            if reply is None and k < len(replies) and id(replies[k]) not in used:
                reply = replies[k]
            if reply is not None:
                used.add(id(reply))
                out.append({**reply, "tool_call_id": call["id"]})
        out.extend(r for r in replies if id(r) not in used)
        i = j
    return out


def _tools(raw: Any, default: list[dict]) -> list[dict]:
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


def _ends_with_submit(messages: list[dict]) -> bool:
    last = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    if not last:
        return False
    if last.get("tool_calls"):
        return last["tool_calls"][-1]["function"]["name"] in proto.SUBMIT_TOOLS
    check = proto.check_bash_block(last.get("content"))
    return check.ok and proto.is_submit_command(check.action)


def _outcome(exit_status: Any) -> str:
    s = str(exit_status or "").lower()
    if s == "submitted":
        return "submitted"
    if s in ("incomplete", "limitsexceeded", "timeexceeded"):
        return "incomplete"
    if s in ("errored", "error"):
        return "error"
    return "unknown"


def _require_str(row: dict, key: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v:
        raise BadRecord(f"missing_{key}")
    return v


def read_swe_zero(row: dict) -> Trajectory:
    """SWE-ZERO rows: mini-swe-agent-1 text protocol, ``messages`` a list of {role, content}."""
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    instance_id = _require_str(row, "instance_id")
    messages = _chat_messages(_decode_messages(row.get("messages")))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    repo = row.get("repo") if isinstance(row.get("repo"), str) else None
    return Trajectory(
        traj_id=f"{instance_id}-{_digest(messages)}",
        instance_id=instance_id,
        repo=repo,
        source="swe_zero",
        protocol="bash_block",
        messages=messages,
        outcome=_outcome(row.get("exit_status")),
    )


def read_mini_swe_agent(row: Any) -> Trajectory:
    """A mini-swe-agent ``.traj.json``: v1 ```bash / v2 ```mswea_bash_command text style, or v2
    native tool calling (assistant ``tool_calls`` to ``bash``, observations with role ``tool``).

    The row is the file's JSON: either ``{"messages": [...], "info": {...}}`` or a bare message list;
    loaders add ``_instance_id`` from the file name when the file does not say.
    """
    if isinstance(row, list):
        row = {"messages": row}
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    info = row.get("info") if isinstance(row.get("info"), dict) else {}
    instance_id = row.get("instance_id") or info.get("instance_id") or row.get("_instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise BadRecord("missing_instance_id")
    messages = split_parallel_calls(_chat_messages(_decode_messages(row.get("messages"))))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    tool_style = any(m.get("tool_calls") for m in messages)
    return Trajectory(
        traj_id=f"{instance_id}-{_digest(messages)}",
        instance_id=instance_id,
        repo=row.get("repo") if isinstance(row.get("repo"), str) else None,
        source="mini_swe_agent",
        protocol="tool_calls" if tool_style else "bash_block",
        messages=messages,
        tools=_tools(row.get("tools"), MINI_SWE_AGENT_TOOLS) if tool_style else None,
        outcome=_outcome(info.get("exit_status") or row.get("exit_status"))
        if (info.get("exit_status") or row.get("exit_status")) else ("submitted" if _ends_with_submit(messages) else "unknown"),
    )


_RUN_SUFFIX = re.compile(r"_run\d+\Z")


def read_coderforge(row: Any) -> Trajectory:
    """CoderForge-Preview ``trajectories`` rows (OpenHands function calling): ``messages`` and
    ``tools`` are JSON strings (native lists are accepted too, as in other OpenHands dumps)."""
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    traj_id = row.get("trajectory_id")
    instance_id = row.get("instance_id") or (_RUN_SUFFIX.sub("", traj_id) if isinstance(traj_id, str) else None)
    if not isinstance(instance_id, str) or not instance_id:
        raise BadRecord("missing_instance_id")
    messages = split_parallel_calls(_chat_messages(_decode_messages(row.get("messages"))))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    reward = row.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
        raise BadRecord("invalid_reward", type(reward).__name__)
    if reward is None and isinstance(row.get("resolved"), bool):
        reward = float(row["resolved"])
    tid = traj_id if isinstance(traj_id, str) and traj_id else f"{instance_id}-{_digest(messages)}"
    return Trajectory(
        traj_id=tid, instance_id=instance_id, repo=row.get("repo") if isinstance(row.get("repo"), str) else None,
        source="coderforge", protocol="tool_calls", messages=messages,
        tools=_tools(row.get("tools"), OPENHANDS_TOOLS),
        outcome="submitted" if _ends_with_submit(messages) else "incomplete",
        reward=None if reward is None else float(reward),
    )


def read_sera(row: Any) -> Trajectory:
    """Raw SERA rows (SWE-agent function calling): ``messages`` a JSON string; assistant messages
    carry ``thought`` / ``action`` / ``tool_calls``; tool replies name their call in ``tool_call_ids``;
    the tool specs are not in the row (SWE-agent's are used)."""
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    instance_id = _require_str(row, "instance_id")
    messages = split_parallel_calls(_chat_messages(_decode_messages(row.get("messages"))))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    return Trajectory(
        traj_id=f"{instance_id}-{_digest(messages)}", instance_id=instance_id, repo=None, source="sera",
        protocol="tool_calls", messages=messages, tools=_tools(row.get("tools"), SWE_AGENT_TOOLS),
        outcome="submitted" if _ends_with_submit(messages) else "incomplete",
    )


_TAG_BODY = {tag: re.compile(rf"\A\s*<{tag}>(.*?)(?:</{tag}>)?\s*\Z", re.DOTALL) for tag in ("tool_call", "tool_response", "answer")}
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def _inner(tag: str, text: str) -> str:
    m = _TAG_BODY[tag].match(text or "")
    return m.group(1).strip() if m else (text or "").strip()


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
        return _tools(tools, SWE_AGENT_TOOLS) if tools else None
    except BadRecord:
        return None


def read_sera_rectified(row: Any) -> Trajectory:
    """SERA "cleaned-rectified" rows: roles system / user / reasoning / tool_call / tool_output /
    answer, wrapped in <think>, <tool_call>{json}</tool_call>, <tool_response>, <answer> tags.
    Converted to OpenAI tool-calling messages (reasoning text goes with the call it precedes)."""
    if not isinstance(row, dict):
        raise BadRecord("row_not_an_object", type(row).__name__)
    raw = _decode_messages(row.get("messages"))
    instance_id = row.get("instance_id")
    messages: list[dict] = []
    pending = ""
    last_call = None
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise BadRecord("invalid_message", f"message {i} has no role")
        role, content = m["role"], _text(m.get("content"))
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
            raise BadRecord("unknown_role", str(role))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    if not isinstance(instance_id, str) or not instance_id:
        instance_id = f"sera-{_digest(messages)}"
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    return Trajectory(
        traj_id=f"{instance_id}-{_digest(messages)}", instance_id=instance_id, repo=None, source="sera_rectified",
        protocol="tool_calls", messages=messages, tools=_tools_from_system(system) or SWE_AGENT_TOOLS,
        outcome="submitted" if messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls") else "incomplete",
    )


READERS: dict[str, Callable[[Any], Trajectory]] = {
    "swe_zero": read_swe_zero,
    "mini_swe_agent": read_mini_swe_agent,
    "coderforge": read_coderforge,
    "sera": read_sera,
    "sera_rectified": read_sera_rectified,
}


def reader_for(fmt: str) -> Callable[[Any], Trajectory]:
    try:
        return READERS[fmt]
    except KeyError:
        raise BadRecord("unsupported_format", f"no reader for source format {fmt!r} yet") from None


# ---------------------------------------------------------------- cutting turns


def trim_text(text: str, limit: int, what: str = "characters") -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} {what} elided ...]\n{text[-tail:]}"


def _steps(messages: list[dict], start: int) -> list[list[dict]]:
    """Group messages from ``start`` into steps: an assistant message plus what follows it."""
    groups: list[list[dict]] = []
    for m in messages[start:]:
        if m["role"] == "assistant" or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    return groups


def _size(msgs: list[dict]) -> int:
    return sum(len(m.get("content") or "") + (len(json.dumps(m["tool_calls"])) if m.get("tool_calls") else 0) for m in msgs)


def trim_history(history: list[dict], max_chars: int, max_obs_chars: int) -> tuple[list[dict], bool]:
    """Cap observations, then drop whole middle steps; the system prompt and task are always kept."""
    trimmed = False
    out = []
    for m in history:
        c = m.get("content") or ""
        if m["role"] in ("user", "tool") and len(c) > max_obs_chars and out and any(x["role"] == "assistant" for x in out):
            m = {**m, "content": trim_text(c, max_obs_chars)}
            trimmed = True
        out.append(m)
    if max_chars <= 0 or _size(out) <= max_chars:
        return out, trimmed
    head_n = next((i + 1 for i, m in enumerate(out) if m["role"] == "user"), len(out))
    head, steps = out[:head_n], _steps(out, head_n)
    budget = max_chars - _size(head)
    kept: list[list[dict]] = []
    for g in reversed(steps):
        if _size(g) > budget and kept:
            break
        kept.insert(0, g)
        budget -= _size(g)
    dropped = len(steps) - len(kept)
    if dropped:
        marker = {"role": "user", "content": f"[... {dropped} earlier steps trimmed to fit the context budget ...]"}
        head = head + [marker]
    return head + [m for g in kept for m in g], True


def reference_check(traj: Trajectory, msg: dict) -> proto.FormatCheck:
    return proto.check_answer(traj.protocol, msg.get("content"), msg.get("tool_calls"), traj.tools)


def cut_turns(traj: Trajectory, max_history_chars: int = 120_000, max_obs_chars: int = 20_000,
              select: Callable[[list[int]], list[int]] | None = None) -> tuple[list[Turn], Counter]:
    """One turn per assistant step whose reference action is well formed.

    ``select`` picks among the usable step numbers before any history is built (a sampler that
    needs one turn of a trajectory pays for one)."""
    skips: Counter = Counter()
    usable: list[tuple[int, int]] = []  # (message index, step)
    step = -1
    seen_task = False
    for i, msg in enumerate(traj.messages):
        if msg["role"] == "user":
            seen_task = True
        if msg["role"] != "assistant":
            continue
        step += 1
        if not seen_task:
            skips["step_without_task"] += 1
            continue
        check = reference_check(traj, msg)
        if not check.ok:
            skips[f"reference_{check.reason}"] += 1
            continue
        usable.append((i, step))
    if select is not None:
        keep = set(select([s for _, s in usable]))
        usable = [(i, s) for i, s in usable if s in keep]
    turns: list[Turn] = []
    for i, step in usable:
        msg = traj.messages[i]
        history, trimmed = trim_history(traj.messages[:i], max_history_chars, max_obs_chars)
        turns.append(Turn(
            turn_id=f"{traj.traj_id}.s{step:03d}",
            instance_id=traj.instance_id,
            repo=traj.repo,
            source=traj.source,
            traj_id=traj.traj_id,
            step=step,
            protocol=traj.protocol,
            history=history,
            reference={k: v for k, v in msg.items() if k in ("role", "content", "tool_calls")},
            tools=traj.tools,
            outcome=traj.outcome,
            trimmed=trimmed,
        ))
    return turns, skips


def turn_from_record(rec: Any) -> Turn:
    """Validate one turn from a prompt file."""
    if not isinstance(rec, dict):
        raise BadRecord("turn_not_an_object", type(rec).__name__)
    for k in ("turn_id", "instance_id", "history", "reference"):
        if k not in rec:
            raise BadRecord(f"turn_missing_{k}")
    if not isinstance(rec["turn_id"], str) or not rec["turn_id"]:
        raise BadRecord("turn_missing_turn_id")
    history = rec["history"]
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except json.JSONDecodeError:
            raise BadRecord("invalid_history_json") from None
    if not isinstance(history, list) or not history or not all(isinstance(m, dict) and "role" in m for m in history):
        raise BadRecord("invalid_history")
    ref = rec["reference"]
    if isinstance(ref, str):
        ref = {"role": "assistant", "content": ref}
    if not isinstance(ref, dict):
        raise BadRecord("invalid_reference")
    protocol = rec.get("protocol", "bash_block")
    if protocol not in ("bash_block", "tool_calls"):
        raise BadRecord("unknown_protocol", str(protocol))
    return Turn(
        turn_id=rec["turn_id"], instance_id=str(rec["instance_id"]), repo=rec.get("repo"),
        source=rec.get("source", "unknown"), traj_id=rec.get("traj_id", rec["turn_id"]),
        step=int(rec.get("step", 0)), protocol=protocol, history=history, reference=ref,
        tools=rec.get("tools"), outcome=rec.get("outcome", "unknown"), trimmed=bool(rec.get("trimmed", False)),
    )
