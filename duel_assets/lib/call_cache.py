"""A content-addressed store of completed LLM calls. No Dagster imports.

SQLite in WAL mode: every completed call is committed as it lands, so a kill -9 loses at most the
calls still in flight; several processes may read and write the file at once (SQLite serialises
the writers and ``busy_timeout`` makes them wait instead of failing).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def call_key(*, role: str, model: str, messages: list[dict], tools: list[dict] | None, params: dict, sample_index: int) -> str:
    blob = json.dumps(
        {"role": role, "model": model, "messages": messages, "tools": tools or None, "params": params,
         "sample_index": sample_index},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=60000")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created REAL, response TEXT)"
        )

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._con.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, dict]:
        out: dict[str, dict] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), chunk):
                part = uniq[i : i + chunk]
                q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(part))})"
                out.update({k: json.loads(v) for k, v in self._con.execute(q, part).fetchall()})
        return out

    def put(self, key: str, role: str, model: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO calls (key, role, model, created, response) VALUES (?, ?, ?, ?, ?)",
                (key, role, model, time.time(), json.dumps(response, ensure_ascii=False)),
            )

    def items(self):
        """(key, response) of every completed call."""
        with self._lock:
            rows = self._con.execute("SELECT key, response FROM calls").fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def count(self) -> int:
        with self._lock:
            return self._con.execute("SELECT count(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._con.close()
