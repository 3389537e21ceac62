"""Which turns a DUEL_HOME already holds: each history once, across prompt files and sample calls.

A turn's identity is its ``history_hash`` (what the models see). The index
(``$DUEL_HOME/history_index.sqlite``) maps every hash to the one prompt file that holds it, and
remembers every prompt file ever written or loaded. Whoever samples or loads a prompt file does so
under :meth:`HistoryIndex.locked` (an exclusive ``flock`` on ``history_index.lock``), so two
processes sampling at once never hand out the same turn; the wait for that lock is bounded
(``locks.timeout_s``) and its error names the holder. The first prompt file to claim a history
keeps it; any other turn with that history is a ``duplicate_history`` skip.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..system.locks import file_lock

_CHUNK = 500


class HistoryIndex:
    def __init__(self, home: Path, lock_timeout_s: float | None = None):
        self.path = Path(home) / "history_index.sqlite"
        self.lock_path = Path(home) / "history_index.lock"
        self.lock_timeout_s = lock_timeout_s  # None: the default of lib.system.locks

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS history (hash TEXT PRIMARY KEY, prompt_file TEXT NOT NULL, turn_id TEXT)")
        con.execute("CREATE INDEX IF NOT EXISTS history_by_file ON history (prompt_file)")
        con.execute("CREATE TABLE IF NOT EXISTS prompt_files (key TEXT PRIMARY KEY, first_seen TEXT, last_seen TEXT, turns INTEGER)")
        return con

    @contextmanager
    def locked(self) -> Iterator[HistoryIndex]:
        with file_lock(self.lock_path, self.lock_timeout_s, what="history index", setting="locks.timeout_s"):
            yield self

    def owners(self, hashes: Iterable[str]) -> dict[str, str]:
        """hash -> the prompt file that holds it, for the hashes already in the index."""
        hashes = list(dict.fromkeys(hashes))
        out: dict[str, str] = {}
        if not hashes or not self.path.exists():
            return out
        con = self._connect()
        try:
            for i in range(0, len(hashes), _CHUNK):
                part = hashes[i:i + _CHUNK]
                q = f"SELECT hash, prompt_file FROM history WHERE hash IN ({','.join('?' * len(part))})"
                out.update(dict(con.execute(q, part).fetchall()))
        finally:
            con.close()
        return out

    def taken_by_others(self, key: str):
        """A function: hashes -> the subset held by prompt files other than ``key``."""
        return lambda hashes: {h for h, owner in self.owners(hashes).items() if owner != key}

    def claim(self, key: str, turns: list[tuple[str, str]], exact: bool = False) -> list[int]:
        """Record ``turns`` ((history_hash, turn_id) pairs) as held by ``key``; returns the
        positions of those another prompt file already holds (or that repeat an earlier turn of
        the list), which are not recorded. With ``exact``, histories ``key`` held before and no
        longer lists are given back (the prompt file is the record). Call it under :meth:`locked`."""
        duplicates: list[int] = []
        owners = self.owners(h for h, _ in turns)
        seen: set[str] = set()
        rows = []
        for i, (h, turn_id) in enumerate(turns):
            if owners.get(h, key) != key or h in seen:
                duplicates.append(i)
                continue
            seen.add(h)
            rows.append((h, key, turn_id))
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        con = self._connect()
        try:
            with con:
                if exact:
                    con.execute("CREATE TEMP TABLE keep (hash TEXT PRIMARY KEY)")
                    con.executemany("INSERT OR IGNORE INTO keep VALUES (?)", [(r[0],) for r in rows])
                    con.execute("DELETE FROM history WHERE prompt_file = ? AND hash NOT IN (SELECT hash FROM keep)", (key,))
                con.executemany("INSERT OR IGNORE INTO history (hash, prompt_file, turn_id) VALUES (?, ?, ?)", rows)
                con.execute("INSERT INTO prompt_files (key, first_seen, last_seen, turns) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET last_seen = excluded.last_seen, turns = excluded.turns",
                            (key, now, now, len(rows)))
        finally:
            con.close()
        return duplicates

    def release(self, key: str) -> int:
        """Forget the histories ``key`` held (before it is sampled again); returns how many."""
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            with con:
                return con.execute("DELETE FROM history WHERE prompt_file = ?", (key,)).rowcount
        finally:
            con.close()

    def forget(self, key: str) -> int:
        """Remove every trace of ``key``: the histories it held and the record that its prompt file
        existed (``duel-assets forget``). Returns how many histories it held."""
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            with con:
                n = con.execute("DELETE FROM history WHERE prompt_file = ?", (key,)).rowcount
                con.execute("DELETE FROM prompt_files WHERE key = ?", (key,))
                return n
        finally:
            con.close()

    def known(self, key: str) -> bool:
        """Whether a prompt file ``key`` was ever written or loaded in this DUEL_HOME."""
        if not self.path.exists():
            return False
        con = self._connect()
        try:
            return con.execute("SELECT 1 FROM prompt_files WHERE key = ?", (key,)).fetchone() is not None
        finally:
            con.close()

    def count(self) -> int:
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            return con.execute("SELECT count(*) FROM history").fetchone()[0]
        finally:
            con.close()
