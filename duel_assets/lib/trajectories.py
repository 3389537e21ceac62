"""Turns: cutting them from trajectories, their identity, and reading them back from prompt files.
No Dagster imports.

The readers live in :mod:`duel_assets.lib.readers` (one module per scaffold family); their names
are re-exported here for callers that import them from this module.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol as proto
from .readers import (
    READERS,
    BadRecord,
    Trajectory,
    read_coderforge,
    read_mini_swe_agent,
    read_sera,
    read_sera_rectified,
    read_swe_agent,
    read_swe_zero,
    reader_for,
    split_parallel_calls,
)
from .readers.common import CHAT_ROLES, text, tool_call, tool_specs
from .trim import cap_message, trim_history, trim_text

__all__ = ["Turn", "TURN_FIELDS", "history_hash", "cut_turns", "turn_from_record", "reference_check", "visible",
           "trim_history", "trim_text", "BadRecord", "Trajectory", "READERS", "reader_for", "split_parallel_calls",
           "read_swe_zero", "read_mini_swe_agent", "read_coderforge", "read_sera", "read_sera_rectified", "read_swe_agent"]


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
    license: str | None = None
    reward: float | None = None
    source_meta: dict = field(default_factory=dict)
    hidden: dict | None = None
    history_hash: str = ""
    contamination: list[str] | None = None  # <benchmark>:<way> of each benchmark it matches whose policy is tag
    excluded_reason: str | None = None  # contaminated:<benchmark>:<way>: never dueled

    def __post_init__(self):
        if not self.history_hash:
            self.history_hash = history_hash(self.history, self.tools)

    def to_record(self) -> dict:
        rec = {f: getattr(self, f) for f in TURN_FIELDS}  # shallow: histories are shared, not copied
        rec.update({f: getattr(self, f) for f in OPTIONAL_FIELDS if getattr(self, f)})
        return rec


TURN_FIELDS = ("turn_id", "instance_id", "repo", "source", "traj_id", "step", "protocol", "history", "reference",
               "tools", "outcome", "trimmed", "license", "reward", "source_meta", "hidden", "history_hash")
OPTIONAL_FIELDS = ("contamination", "excluded_reason")  # in a record only when set


def _canonical_message(m: dict) -> dict:
    out: dict = {"role": m.get("role"), "content": m.get("content") or ""}
    calls = []
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            pass
        calls.append({"name": fn.get("name"), "arguments": args})
    if calls:
        out["tool_calls"] = calls
    return out


def history_hash(history: list[dict], tools: list[dict] | None) -> str:
    """A turn's identity: sha256 of the canonical JSON of what the models see — the history
    (role, content, tool calls by name and arguments; tool-call ids are per-run noise and left out)
    and the tools."""
    doc = {"history": [_canonical_message(m) for m in history], "tools": tools or None}
    data = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def visible(m: dict) -> dict:
    """A history message as the models get it (reasoning returned apart by a provider is not part of it)."""
    return {k: v for k, v in m.items() if k != "reasoning_content"} if "reasoning_content" in m else m


def reference_check(traj: Trajectory, msg: dict) -> proto.FormatCheck:
    return proto.check_answer(traj.protocol, msg.get("content"), msg.get("tool_calls"), traj.tools)


def cut_turns(traj: Trajectory, max_history_chars: int = 120_000, max_obs_chars: int = 20_000,
              select: Callable[[list[int]], list[int]] | None = None) -> tuple[list[Turn], Counter]:
    """One turn per assistant step whose reference action is well formed.

    ``select`` picks among the usable step numbers before any history is built (a sampler that
    needs one turn of a trajectory pays for one). Messages the reader dropped are counted too."""
    skips: Counter = Counter(traj.skips)
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
        history, trimmed = trim_history([visible(m) for m in traj.messages[:i]], max_history_chars, max_obs_chars)
        turns.append(Turn(
            turn_id=f"{traj.traj_id}.s{step:03d}", instance_id=traj.instance_id, repo=traj.repo, source=traj.source,
            traj_id=traj.traj_id, step=step, protocol=traj.protocol, history=history,
            reference={k: v for k, v in msg.items() if k in ("role", "content", "tool_calls", "reasoning_content")},
            tools=traj.tools, outcome=traj.outcome, trimmed=trimmed, license=traj.license, reward=traj.reward,
            source_meta=traj.source_meta, hidden=traj.hidden,
        ))
    return turns, skips


# ---------------------------------------------------------------- prompt-file records


def _json_field(rec: dict, key: str, kind: type, default: Any) -> Any:
    v = rec.get(key, default)
    if isinstance(v, str) and kind is not str:
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise BadRecord(f"invalid_{key}_json") from None
    if v is None:
        return default
    if not isinstance(v, kind):
        raise BadRecord(f"invalid_{key}", type(v).__name__)
    return v


def _record_message(m: Any) -> dict:
    if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
        raise BadRecord("invalid_history")
    out: dict = {"role": m["role"], "content": text(m.get("content"))}
    if m["role"] == "assistant" and m.get("tool_calls"):
        if not isinstance(m["tool_calls"], list):
            raise BadRecord("invalid_tool_call", "tool_calls is not a list")
        out["tool_calls"] = [tool_call(tc, j) for j, tc in enumerate(m["tool_calls"])]
    if m["role"] == "tool":
        out["tool_call_id"] = str(m.get("tool_call_id") or "") or None
    return out


def turn_from_record(rec: Any, max_history_chars: int = 0, max_obs_chars: int = 0) -> Turn:
    """Validate one turn from a prompt file (or a warehouse row): every message checked and
    normalised, and the history bounded by the same rules as source rows (0: no bound). The
    ``history_hash`` is always recomputed from what was read, never taken from the record."""
    if not isinstance(rec, dict):
        raise BadRecord("turn_not_an_object", type(rec).__name__)
    for k in ("turn_id", "instance_id", "history", "reference"):
        if k not in rec:
            raise BadRecord(f"turn_missing_{k}")
    if not isinstance(rec["turn_id"], str) or not rec["turn_id"]:
        raise BadRecord("turn_missing_turn_id")
    history = _json_field(rec, "history", list, None)
    if not history:
        raise BadRecord("invalid_history")
    history = [visible(_record_message(m)) for m in history]
    ref = rec["reference"]
    if isinstance(ref, str):
        ref = {"role": "assistant", "content": ref}
    if not isinstance(ref, dict):
        raise BadRecord("invalid_reference")
    reasoning = ref.get("reasoning_content") if isinstance(ref.get("reasoning_content"), str) else None
    ref = _record_message({**ref, "role": "assistant"})
    if reasoning:
        ref["reasoning_content"] = reasoning
    protocol = rec.get("protocol", "bash_block")
    if protocol not in ("bash_block", "tool_calls"):
        raise BadRecord("unknown_protocol", str(protocol))
    tools = tool_specs(rec.get("tools"), None)
    if tools is not None and max_history_chars > 0 and len(json.dumps(tools)) > max_history_chars:
        raise BadRecord("tools_too_large")
    history, trimmed = trim_history(history, max_history_chars, max_obs_chars)
    ref = cap_message(ref, max_history_chars, max_obs_chars, observation=False)
    reward = rec.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward)):
        raise BadRecord("invalid_reward")
    lic = rec.get("license")
    if lic is not None and not isinstance(lic, str):
        raise BadRecord("invalid_license")
    for key in ("repo", "source", "traj_id", "outcome"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise BadRecord(f"invalid_{key}", type(rec[key]).__name__)
    step = rec.get("step", 0)
    step = int(step) if isinstance(step, float) and step.is_integer() else step
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise BadRecord("invalid_step", repr(step)[:40])
    tags = _json_field(rec, "contamination", list, None)
    if tags is not None and not all(isinstance(x, str) for x in tags):
        raise BadRecord("invalid_contamination")
    excluded = rec.get("excluded_reason")
    if excluded is not None and not isinstance(excluded, str):
        raise BadRecord("invalid_excluded_reason")
    return Turn(
        contamination=tags or None, excluded_reason=excluded or None,
        turn_id=rec["turn_id"], instance_id=str(rec["instance_id"]), repo=rec.get("repo"),
        source=rec.get("source", "unknown"), traj_id=rec.get("traj_id", rec["turn_id"]),
        step=step, protocol=protocol, history=history, reference=ref, tools=tools,
        outcome=rec.get("outcome", "unknown"), trimmed=bool(rec.get("trimmed", False)) or trimmed,
        license=lic or None, reward=None if reward is None else float(reward),
        source_meta=_json_field(rec, "source_meta", dict, {}), hidden=_json_field(rec, "hidden", dict, None),
    )
