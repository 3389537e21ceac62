"""Whole source trajectories, kept when their turns are sampled, for trajectory rows.

A turn carries only the history before its move; a trajectory row needs every message of its
source trajectory, including those after the last sampled move. With ``[export] layout =
"trajectory"``, sampling keeps the trajectory of every turn it puts in a prompt file in
``$DUEL_HOME/trajectory_store.sqlite`` (one row per ``traj_id``, the first one written stays;
zlib-compressed JSON), written with the prompt file under the history index's lock. Each message
is bounded as histories are (observations to ``sampling.max_observation_chars``, other messages to
half of ``sampling.max_history_chars``), but no step is dropped, so a stored trajectory has every
assistant message of the source in order: step ``s`` of a turn is its ``s``-th assistant message.
A turn whose trajectory is not in the store (a hand-made prompt file, or one sampled with another
layout) is rebuilt from the history and move of its latest exported turn instead (``complete =
false``).
"""
from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path

from ..trim import cap_message

_CHUNK = 400


def whole_trajectory(traj, max_history_chars: int, max_obs_chars: int) -> dict:
    """A trajectory's messages (reasoning kept), each bounded like a history message, and its tools."""
    msgs, seen_assistant = [], False
    for m in traj.messages:
        seen_assistant = seen_assistant or m["role"] == "assistant"
        observation = m["role"] in ("user", "tool") and seen_assistant
        msgs.append(cap_message(m, max_history_chars, max_obs_chars, observation))
    return {"messages": msgs, "tools": traj.tools, "source": traj.source, "instance_id": traj.instance_id,
            "protocol": traj.protocol}


class TrajectoryStore:
    def __init__(self, home: Path):
        self.path = Path(home) / "trajectory_store.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS trajectories (traj_id TEXT PRIMARY KEY, data BLOB NOT NULL)")
        return con

    def put(self, items: dict[str, dict]) -> None:
        if not items:
            return
        rows = [(k, zlib.compress(json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"), 6))
                for k, v in items.items()]
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR IGNORE INTO trajectories VALUES (?, ?)", rows)
        finally:
            con.close()

    def known(self, traj_ids: Iterable[str]) -> set[str]:
        ids = [i for i in dict.fromkeys(traj_ids) if i]
        if not ids or not self.path.exists():
            return set()
        con = self._connect()
        try:
            out: set[str] = set()
            for i in range(0, len(ids), _CHUNK):
                part = ids[i:i + _CHUNK]
                q = f"SELECT traj_id FROM trajectories WHERE traj_id IN ({','.join('?' * len(part))})"
                out.update(k for (k,) in con.execute(q, part))
            return out
        finally:
            con.close()

    def get(self, traj_ids: Iterable[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(traj_ids))
        if not ids or not self.path.exists():
            return {}
        con = self._connect()
        out: dict[str, dict] = {}
        try:
            for i in range(0, len(ids), _CHUNK):
                part = ids[i:i + _CHUNK]
                q = f"SELECT traj_id, data FROM trajectories WHERE traj_id IN ({','.join('?' * len(part))})"
                for k, blob in con.execute(q, part):
                    out[k] = json.loads(zlib.decompress(blob).decode("utf-8", "surrogatepass"))
        finally:
            con.close()
        return out
