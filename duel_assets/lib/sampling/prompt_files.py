"""Reading prompt files: bounded, validated, each history once.

A prompt file is a JSON list of turns or an object with a ``turns`` list. It must be a regular file
(a symlink to ``/dev/zero`` or a FIFO is refused before anything is read) no larger than
``sampling.max_prompt_file_bytes``; every turn is validated and its history bounded by the same
rules as source rows. Turns that fail are counted by reason; a file with no valid turn, or listing
more turns than a partition holds, is an error.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..system.bounded import BadJSON, InputRefused, loads, read_bounded
from ..turn import BadRecord, Turn, visible
from .readers.common import CHAT_ROLES, text, tool_call, tool_specs
from .trim import cap_message, trim_history

PROMPT_FILE_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class PromptFileError(ValueError):
    pass


@dataclass
class LoadedPromptFile:
    turns: list[Turn]
    skipped: Counter
    meta: dict


def read_prompt_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, after checking that it is a regular file within ``max_bytes``."""
    try:
        return read_bounded(path, "prompt file", max_bytes, "sampling.max_prompt_file_bytes")
    except InputRefused as e:
        raise PromptFileError(str(e)) from None


def load_prompt_file(path: Path, max_turns: int = 200, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_history_chars: int = 0, max_obs_chars: int = 0) -> LoadedPromptFile:
    data = read_prompt_bytes(path, max_bytes)
    try:
        doc = loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PromptFileError(f"prompt file {path} is not UTF-8 (byte {e.start})") from None
    except BadJSON as e:
        raise PromptFileError(f"prompt file {path} is not JSON: {e}") from None
    if isinstance(doc, list):
        doc = {"turns": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("turns"), list):
        raise PromptFileError(f"prompt file {path} must be a JSON list of turns or an object with a 'turns' list")
    if len(doc["turns"]) > max_turns:  # refused whole: keeping the first max_turns would drop the rest unseen
        raise PromptFileError(f"prompt file {path} lists {len(doc['turns'])} turns; a prompt file (one partition) "
                              f"holds at most {max_turns}: split it into files of at most {max_turns} turns")
    skipped: Counter = Counter()
    turns: list[Turn] = []
    seen_ids: set[str] = set()
    seen_hashes: set[str] = set()
    for rec in doc["turns"]:
        try:
            t = turn_from_record(rec, max_history_chars, max_obs_chars)
        except BadRecord as e:
            skipped[e.reason] += 1
            continue
        if t.turn_id in seen_ids:
            skipped["duplicate_turn_id"] += 1
            continue
        if t.history_hash in seen_hashes:
            skipped["duplicate_history"] += 1
            continue
        seen_ids.add(t.turn_id)
        seen_hashes.add(t.history_hash)
        turns.append(t)
    if not turns:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "it lists no turns"
        raise PromptFileError(f"prompt file {path} has no valid turn ({why})")
    meta = {k: v for k, v in doc.items() if k != "turns"}
    return LoadedPromptFile(turns=turns, skipped=skipped, meta=meta)


# ---------------------------------------------------------------- one turn of a record


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
