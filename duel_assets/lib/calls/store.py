"""The call store on one machine: one SQLite file in WAL mode. No Dagster imports.

``$DUEL_HOME/cache/llm_calls.sqlite`` is shared by every process that makes calls on the machine:
``duel-assets run`` in several terminals, the runs of a backfill, the UI's runs. ``BEGIN IMMEDIATE``
serialises the decisions (:mod:`.store_base`); ``busy_timeout`` makes writers wait instead of failing.
"""
from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .store_base import CallStoreBase

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created REAL, response TEXT);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, endpoint TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_holder ON leases (holder);
CREATE TABLE IF NOT EXISTS holders (holder TEXT PRIMARY KEY, host TEXT, pid INTEGER, endpoint TEXT, heartbeat REAL,
                                    waiting INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS budget (endpoint TEXT PRIMARY KEY, "window" REAL, last_decrease REAL, pause_until REAL,
                                   next_req REAL, next_tok REAL, learned_rpm REAL, learned_tpm REAL, probed REAL);
"""


def _retry_locked(step, seconds: float = 60.0) -> None:
    """Run ``step`` again while another connection holds the lock it needs: switching a new file to
    WAL answers "database is locked" at once (SQLite does not wait on that lock), so several
    processes opening a fresh store together would otherwise fail."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class CallStore(CallStoreBase):
    """See :mod:`.store_base`. Thread-safe; one connection per store object."""

    def __init__(self, path: Path | str):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA busy_timeout=60000")
        _retry_locked(lambda: self._con.execute("PRAGMA journal_mode=WAL"))
        self._con.execute("PRAGMA synchronous=NORMAL")
        _retry_locked(lambda: self._con.executescript(SCHEMA))

    @contextmanager
    def _tx(self, endpoint: str | None = None) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")  # the whole file: every endpoint at once
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._con

    def close(self) -> None:
        with self._lock:
            self._con.close()
