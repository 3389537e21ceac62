"""OpenHands family: CoderForge-Preview ``trajectories`` rows and other OpenHands dumps."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ...turn import BadRecord, Trajectory
from .common import (
    chat_messages,
    decode_messages,
    digest,
    ends_with_submit,
    optional_str,
    require_assistant,
    require_object,
    split_parallel_calls,
    tool_specs,
)
from .provenance import HIDDEN_ROW_KEYS, hidden_of, license_of, reward_of, source_meta
from .scaffolds import OPENHANDS_TOOLS

_RUN_SUFFIX = re.compile(r"_run\d+\Z")


def read_coderforge(row: Any) -> Trajectory:
    """CoderForge-Preview ``trajectories`` rows (OpenHands function calling): ``messages`` and
    ``tools`` are JSON strings (native lists are accepted too, as in other OpenHands dumps).
    ``license`` and ``reward`` become columns; ``finish_reason``, ``image`` and the rest travel in
    ``source_meta``."""
    row = require_object(row)
    traj_id = row.get("trajectory_id")
    instance_id = row.get("instance_id") or (_RUN_SUFFIX.sub("", traj_id) if isinstance(traj_id, str) else None)
    if not isinstance(instance_id, str) or not instance_id:
        raise BadRecord("missing_instance_id")
    skips: Counter = Counter()
    messages = require_assistant(split_parallel_calls(chat_messages(decode_messages(row.get("messages")), skips)))
    reward = reward_of(row)
    repo = optional_str(row, "repo")
    tid = traj_id if isinstance(traj_id, str) and traj_id else f"{instance_id}-{digest(messages)}"
    return Trajectory(
        traj_id=tid, instance_id=instance_id, repo=repo, source="coderforge", protocol="tool_calls", messages=messages,
        tools=tool_specs(row.get("tools"), OPENHANDS_TOOLS),
        outcome="submitted" if ends_with_submit(messages) else "incomplete",
        reward=reward, license=license_of(row), hidden=hidden_of(row, repo), skips=skips,
        source_meta=source_meta(row, ("trajectory_id", "instance_id", "repo", "messages", "tools", "license", "reward",
                                      *HIDDEN_ROW_KEYS)),
    )
