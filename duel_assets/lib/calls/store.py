"""The call store on one machine: one SQLite file in WAL mode.

``$DUEL_HOME/cache/llm_calls.sqlite`` is shared by every process that makes calls on the machine:
``duel-assets run`` in several terminals, the runs of a backfill, the UI's runs. It holds every reply
bought, so it is created 0600 (the folder ``cache/`` is 0700). ``BEGIN IMMEDIATE``
serialises the decisions (:mod:`.store_base`); ``busy_timeout`` makes writers wait instead of failing.
"""
from __future__ import annotations

import os
import random
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..settings.paths import private_dir
from .store_base import CallStoreBase

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created REAL, response TEXT,
                                  endpoint TEXT, standin INTEGER);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, endpoint TEXT NOT NULL, expires REAL NOT NULL,
                                   usd REAL);
CREATE TABLE IF NOT EXISTS spend (scope TEXT PRIMARY KEY, usd REAL NOT NULL, backfilled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, input_file_id TEXT, status TEXT, created REAL,
                                    holder TEXT, host TEXT, usd REAL);
CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, role TEXT, model TEXT);
CREATE INDEX IF NOT EXISTS batch_requests_batch ON batch_requests (batch_id);
CREATE INDEX IF NOT EXISTS leases_holder ON leases (holder);
CREATE TABLE IF NOT EXISTS holders (holder TEXT PRIMARY KEY, host TEXT, pid INTEGER, endpoint TEXT, heartbeat REAL,
                                    waiting INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS budget (endpoint TEXT PRIMARY KEY, "window" REAL, last_decrease REAL, pause_until REAL,
                                   next_req REAL, next_tok REAL, learned_rpm REAL, learned_tpm REAL, probed REAL);
CREATE TABLE IF NOT EXISTS downgrades (endpoint TEXT NOT NULL, model TEXT NOT NULL, switch TEXT NOT NULL,
                                       value TEXT NOT NULL, reason TEXT, created REAL, PRIMARY KEY (endpoint, model, switch));
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


def _private_file(path: Path) -> None:
    """The store's file created 0600 (its folder 0700 when this makes it); SQLite gives its -wal and
    -shm files the database file's mode. An existing file of this user is narrowed to 0600."""
    if not path.parent.exists():
        private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(f, 0o600)


class CallStore(CallStoreBase):
    """See :mod:`.store_base`. Thread-safe; one connection per store object."""

    def __init__(self, path: Path | str):
        super().__init__()
        self.path = Path(path)
        _private_file(self.path)
        self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA busy_timeout=60000")
        _retry_locked(lambda: self._con.execute("PRAGMA journal_mode=WAL"))
        self._con.execute("PRAGMA synchronous=NORMAL")
        _retry_locked(lambda: self._con.executescript(SCHEMA))
        _retry_locked(self._add_endpoint_column)

    def _add_endpoint_column(self) -> None:
        """A store made before the endpoint (or a lease's worst-case cost) was recorded gets the
        columns (its calls stay unattributed)."""
        for table, name, kind in (("calls", "endpoint", "TEXT"), ("calls", "standin", "INTEGER"), ("leases", "usd", "REAL"),
                                  ("batches", "usd", "REAL")):
            if name in {row[1] for row in self._con.execute(f"PRAGMA table_info({table})")}:
                continue
            try:
                self._con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):  # another process added it meanwhile
                    raise
        self._con.execute("CREATE INDEX IF NOT EXISTS calls_endpoint ON calls (endpoint, standin)")

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
