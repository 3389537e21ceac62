"""Trajectory readers into one canonical shape, and turn cutting. No Dagster imports.

A reader takes one source row (a dict) and returns a :class:`Trajectory` or raises
:class:`BadRecord` with a short reason code; callers count the codes, so one broken row never sinks
the rest. Messages are normalised to OpenAI chat dicts: ``{"role", "content"}`` plus
``tool_calls`` / ``tool_call_id`` / ``name`` where the scaffold has them.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import protocol as proto


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
        return asdict(self)


TURN_FIELDS = ("turn_id", "instance_id", "repo", "source", "traj_id", "step", "protocol",
               "history", "reference", "tools", "outcome", "trimmed")


def _sha(obj: Any, n: int = 12) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:n]


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


def _plain_messages(raw: list) -> list[dict]:
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m:
            raise BadRecord("invalid_message", f"message {i} has no role")
        role = m["role"]
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRecord("unknown_role", str(role))
        out.append({"role": role, "content": _text(m.get("content"))})
    return out


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
    messages = _plain_messages(_decode_messages(row.get("messages")))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    repo = row.get("repo") if isinstance(row.get("repo"), str) else None
    return Trajectory(
        traj_id=f"{instance_id}-{_sha(messages)}",
        instance_id=instance_id,
        repo=repo,
        source="swe_zero",
        protocol="bash_block",
        messages=messages,
        outcome=_outcome(row.get("exit_status")),
    )


def read_mini_swe_agent(row: Any) -> Trajectory:
    """A mini-swe-agent ``.traj.json`` (v1 ```bash or v2 ```mswea_bash_command text style).

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
    messages = _plain_messages(_decode_messages(row.get("messages")))
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no_assistant_step")
    return Trajectory(
        traj_id=f"{instance_id}-{_sha(messages)}",
        instance_id=instance_id,
        repo=row.get("repo") if isinstance(row.get("repo"), str) else None,
        source="mini_swe_agent",
        protocol="bash_block",
        messages=messages,
        outcome=_outcome(info.get("exit_status") or row.get("exit_status")),
    )


READERS: dict[str, Callable[[Any], Trajectory]] = {
    "swe_zero": read_swe_zero,
    "mini_swe_agent": read_mini_swe_agent,
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
    return sum(len(m.get("content") or "") + len(json.dumps(m.get("tool_calls") or "")) for m in msgs)


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


def cut_turns(traj: Trajectory, max_history_chars: int = 120_000, max_obs_chars: int = 20_000) -> tuple[list[Turn], Counter]:
    """One turn per assistant step whose reference action is well formed."""
    skips: Counter = Counter()
    turns: list[Turn] = []
    step = -1
    for i, msg in enumerate(traj.messages):
        if msg["role"] != "assistant":
            continue
        step += 1
        if not any(m["role"] == "user" for m in traj.messages[:i]):
            skips["step_without_task"] += 1
            continue
        check = reference_check(traj, msg)
        if not check.ok:
            skips[f"reference_{check.reason}"] += 1
            continue
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
