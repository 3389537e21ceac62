"""mini-swe-agent family: SWE-ZERO rows and mini-swe-agent ``.traj.json`` files.

Every released mini-swe-agent format is read: v1 text (```` ```bash ````), v2 text
(```` ```mswea_bash_command ````) and v2 native tool calls (``trajectory_format``
``mini-swe-agent-1.1``; observations with role ``tool``; a final message with role ``exit`` that
is dropped and counted, not a reason to lose the file).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ...turn import BadRecord, Trajectory
from .common import (
    chat_messages,
    decode_messages,
    digest,
    ends_with_submit,
    optional_str,
    outcome_of,
    require_assistant,
    require_object,
    require_str,
    split_parallel_calls,
    tool_specs,
)
from .provenance import HIDDEN_ROW_KEYS, hidden_of, license_of, reward_of, source_meta
from .scaffolds import MINI_SWE_AGENT_TOOLS


def read_swe_zero(row: Any) -> Trajectory:
    """SWE-ZERO rows: mini-swe-agent-1 text protocol, ``messages`` a list of {role, content}."""
    row = require_object(row)
    instance_id = require_str(row, "instance_id")
    skips: Counter = Counter()
    messages = require_assistant(chat_messages(decode_messages(row.get("messages")), skips))
    repo = optional_str(row, "repo")
    return Trajectory(
        traj_id=f"{instance_id}-{digest(messages)}", instance_id=instance_id, repo=repo, source="swe_zero",
        protocol="bash_block", messages=messages, outcome=outcome_of(row.get("exit_status")),
        reward=reward_of(row), license=license_of(row), hidden=hidden_of(row, repo), skips=skips,
        source_meta=source_meta(row, ("instance_id", "repo", "messages", "license", "reward", *HIDDEN_ROW_KEYS)),
    )


def read_mini_swe_agent(row: Any) -> Trajectory:
    """A mini-swe-agent ``.traj.json``: ``{"messages": [...], "info": {...}, "trajectory_format", ...}``
    or a bare message list; loaders add ``_instance_id`` from the file name when the file does not
    say. ``info`` fields (exit status, versions, model stats) travel in ``source_meta``."""
    if isinstance(row, list):
        row = {"messages": row}
    row = require_object(row)
    info = row.get("info") if isinstance(row.get("info"), dict) else {}
    instance_id = row.get("instance_id") or info.get("instance_id") or row.get("_instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise BadRecord("missing_instance_id")
    skips: Counter = Counter()
    messages = require_assistant(split_parallel_calls(chat_messages(decode_messages(row.get("messages")), skips)))
    tool_style = any(m.get("tool_calls") for m in messages)
    exit_status = info.get("exit_status") or row.get("exit_status")
    repo = optional_str(row, "repo")
    meta_extra = {k: v for k, v in info.items() if k not in ("submission", "instance_id")}
    return Trajectory(
        traj_id=f"{instance_id}-{digest(messages)}", instance_id=instance_id, repo=repo, source="mini_swe_agent",
        protocol="tool_calls" if tool_style else "bash_block", messages=messages,
        tools=tool_specs(row.get("tools"), MINI_SWE_AGENT_TOOLS) if tool_style else None,
        outcome=outcome_of(exit_status) if exit_status else ("submitted" if ends_with_submit(messages) else "unknown"),
        reward=reward_of(row), license=license_of(row), hidden=hidden_of(row, repo), skips=skips,
        source_meta=source_meta(row, ("instance_id", "repo", "messages", "tools", "info", "license", "reward",
                                      *HIDDEN_ROW_KEYS), meta_extra),
    )
