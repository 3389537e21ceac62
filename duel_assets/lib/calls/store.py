"""The call store on one machine: completed calls, requests in flight, the endpoint's budget. No Dagster imports.

One SQLite file in WAL mode (``$DUEL_HOME/cache/llm_calls.sqlite``) shared by every process that
makes calls: ``duel-assets run`` in several terminals, the runs of a backfill, the UI's runs.

* ``calls``: every completed call by content key, committed the moment it lands (a kill -9 loses at
  most the calls still in flight); failures are never stored;
* ``leases``: one row per request in flight anywhere, renewed by its holder and reaped when the
  holder dies (its process is gone, or it stopped renewing);
* ``holders``: who is making calls and how many of its requests are waiting for a slot;
* ``budget``: per endpoint, the shared concurrency window and pacing clocks (see :mod:`.flight`).

Every decision runs inside one ``BEGIN IMMEDIATE`` transaction, so two processes never grant the
same slot or the same body.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import flight

HOST = socket.gethostname()
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created REAL, response TEXT);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, endpoint TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS leases_holder ON leases (holder);
CREATE TABLE IF NOT EXISTS holders (holder TEXT PRIMARY KEY, host TEXT, pid INTEGER, endpoint TEXT, heartbeat REAL,
                                    waiting INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS budget (endpoint TEXT PRIMARY KEY, "window" REAL, last_decrease REAL, pause_until REAL,
                                   next_req REAL, next_tok REAL, learned_rpm REAL, learned_tpm REAL, probed REAL);
"""
_BUDGET_COLS = ("window", "last_decrease", "pause_until", "next_req", "next_tok", "learned_rpm", "learned_tpm", "probed")
_QUOTED = ", ".join(f'"{c}"' for c in _BUDGET_COLS)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CallStore:
    """See the module docstring. Thread-safe; one connection per store object."""

    lease_ttl_s = 60.0

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=60000")
        self._con.executescript(_SCHEMA)
        self._last_reap = 0.0
        # what this process last saw of each endpoint's budget: saves a read per completed call
        # while nothing there can change (probed, window at the bound); a 429 anywhere resets it
        self._probed: dict[str, bool] = {}
        self._window_full: dict[str, bool] = {}
        self.last_window: dict[str, float] = {}  # the endpoint's window as of this process's last claim

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    # ------------------------------------------------------------------ completed calls

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._con.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, dict]:
        with self._lock:
            return self._completed(self._con, keys, chunk)

    @staticmethod
    def _completed(con, keys, chunk: int = 500) -> dict[str, dict]:
        out: dict[str, dict] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), chunk):
            part = uniq[i: i + chunk]
            q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(part))})"
            out.update({k: json.loads(v) for k, v in con.execute(q, part).fetchall()})
        return out

    def put(self, key: str, role: str, model: str, response: dict[str, Any]) -> bool:
        """Insert-if-absent; True when this call stored it (a completed call is never overwritten)."""
        with self._lock:
            cur = self._con.execute("INSERT OR IGNORE INTO calls (key, role, model, created, response) VALUES (?, ?, ?, ?, ?)",
                                    (key, role, model, time.time(), json.dumps(response, ensure_ascii=False)))
            return cur.rowcount == 1

    def items(self) -> list[tuple[str, dict]]:
        with self._lock:
            rows = self._con.execute("SELECT key, response FROM calls").fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def count(self) -> int:
        with self._lock:
            return self._con.execute("SELECT count(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ------------------------------------------------------------------ flight control

    def register(self, holder: str, endpoint: str) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO holders (holder, host, pid, endpoint, heartbeat, waiting) VALUES (?, ?, ?, ?, ?, 0)",
                        (holder, HOST, os.getpid(), endpoint, time.time()))

    def unregister(self, holder: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM leases WHERE holder = ?", (holder,))
            con.execute("DELETE FROM holders WHERE holder = ?", (holder,))

    def renew(self, holder: str) -> None:
        now = time.time()
        with self._tx() as con:
            con.execute("UPDATE leases SET expires = ? WHERE holder = ?", (now + self.lease_ttl_s, holder))
            con.execute("UPDATE holders SET heartbeat = ? WHERE holder = ?", (now, holder))

    def _reap(self, con, now: float) -> None:
        """Leases whose holder stopped renewing them, and holders of this host whose process is gone."""
        if now - self._last_reap < 1.0:
            return
        self._last_reap = now
        con.execute("DELETE FROM leases WHERE expires < ?", (now,))
        con.execute("DELETE FROM holders WHERE heartbeat < ?", (now - 3 * self.lease_ttl_s,))
        for holder, pid in con.execute("SELECT holder, pid FROM holders WHERE host = ? AND pid != ?",
                                       (HOST, os.getpid())).fetchall():
            if not _pid_alive(pid):
                con.execute("DELETE FROM leases WHERE holder = ?", (holder,))
                con.execute("DELETE FROM holders WHERE holder = ?", (holder,))

    def _budget(self, con, endpoint: str, limits: flight.Limits) -> flight.Budget:
        row = con.execute(f"SELECT {_QUOTED} FROM budget WHERE endpoint = ?", (endpoint,)).fetchone()
        if row is None:
            return flight.Budget()
        return flight.Budget(*[float(v or 0.0) for v in row])

    def _save_budget(self, con, endpoint: str, b: flight.Budget) -> None:
        con.execute(f"INSERT OR REPLACE INTO budget (endpoint, {_QUOTED}) VALUES (?, {', '.join('?' * len(_BUDGET_COLS))})",
                    (endpoint, *[getattr(b, c) for c in _BUDGET_COLS]))

    def claim(self, holder: str, endpoint: str, wanted: list[flight.Wanted], limits: flight.Limits,
              waiting_after: int | None = None) -> tuple[dict[str, dict], flight.Decision, set[str]]:
        """In one transaction: the wanted keys already completed (their responses), and the keys this
        holder may send now (leased to it). Keys leased by another live holder are neither: their
        owner's reply will land in ``calls``. ``waiting_after`` is how many of this holder's keys
        will still wait (for fairness between holders). Returns (completed, decision, keys held by
        other holders)."""
        now = time.time()
        with self._tx() as con:
            self._reap(con, now)
            keys = [w.key for w in wanted]
            done = self._completed(con, keys) if keys else {}
            rest = [w for w in wanted if w.key not in done]
            held: set[str] = set()
            if rest:
                q = f"SELECT key FROM leases WHERE key IN ({','.join('?' * len(rest))}) AND holder != ?"
                held = {k for (k,) in con.execute(q, [*(w.key for w in rest), holder]).fetchall()}
            candidates = [w for w in rest if w.key not in held]
            live, mine = con.execute("SELECT count(*), coalesce(sum(holder = ?), 0) FROM leases WHERE endpoint = ?",
                                     (holder, endpoint)).fetchone()
            others_waiting, contenders = con.execute(
                "SELECT coalesce(sum(waiting > 0), 0), count(*) FROM holders WHERE endpoint = ? AND holder != ? AND "
                "(waiting > 0 OR holder IN (SELECT holder FROM leases))", (endpoint, holder)).fetchone()
            b = self._budget(con, endpoint, limits)
            self._probed[endpoint] = bool(b.probed)
            self._window_full[endpoint] = b.window >= limits.concurrency
            self.last_window[endpoint] = flight.effective_window(limits, b)
            before = (b.next_req, b.next_tok)
            decision = flight.decide(candidates, limits, b, now, live, mine, contenders + 1, bool(others_waiting))
            if decision.granted:
                con.executemany("INSERT INTO leases (key, holder, endpoint, expires) VALUES (?, ?, ?, ?)",
                                [(k, holder, endpoint, now + self.lease_ttl_s) for k in decision.granted])
            if (b.next_req, b.next_tok) != before:
                self._save_budget(con, endpoint, b)
            waiting = len(rest) - len(decision.granted) if waiting_after is None else waiting_after
            con.execute("UPDATE holders SET waiting = ?, heartbeat = ? WHERE holder = ?", (waiting, now, holder))
        return done, decision, held

    def complete(self, holder: str, endpoint: str, key: str, role: str, model: str, response: dict,
                 limits: flight.Limits) -> bool:
        """Store a completed call and release its lease (one transaction); additive increase of the
        window. True when this call stored it."""
        now = time.time()
        with self._tx() as con:
            cur = con.execute("INSERT OR IGNORE INTO calls (key, role, model, created, response) VALUES (?, ?, ?, ?, ?)",
                              (key, role, model, now, json.dumps(response, ensure_ascii=False)))
            con.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))
            if self._probed.get(endpoint) and (not limits.adaptive or self._window_full.get(endpoint)):
                return cur.rowcount == 1
            b = self._budget(con, endpoint, limits)
            if flight.on_success(limits, b):
                self._save_budget(con, endpoint, b)
            self._probed[endpoint] = bool(b.probed)
            self._window_full[endpoint] = b.window >= limits.concurrency
            return cur.rowcount == 1

    def release(self, holder: str, key: str, endpoint: str | None = None) -> None:
        """Give a lease back after a failed attempt (the endpoint did answer: the probe is over)."""
        with self._tx() as con:
            con.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))
            if endpoint is not None and not self._probed.get(endpoint):
                b = self._budget(con, endpoint, flight.Limits(1))
                if flight.on_finished(b):
                    self._save_budget(con, endpoint, b)
                self._probed[endpoint] = True

    def feedback(self, endpoint: str, limits: flight.Limits, rate_limited: bool, retry_after: float | None,
                 headers: dict | None) -> flight.Budget:
        """What one reply says about the endpoint's limits: a 429 (decrease, pause), and announced
        limits from ``x-ratelimit-*`` headers. Returns the budget after the change."""
        now = time.time()
        with self._tx() as con:
            b = self._budget(con, endpoint, limits)
            changed = False
            if rate_limited:
                live = con.execute("SELECT count(*) FROM leases WHERE endpoint = ?", (endpoint,)).fetchone()[0]
                flight.on_rate_limited(limits, b, now, retry_after, live + 1)
                self._window_full[endpoint] = False
                changed = True
            if headers:
                changed |= flight.on_headers(b, now, headers.get("limit_requests"), headers.get("limit_tokens"),
                                             headers.get("remaining_requests"), headers.get("reset_requests_s"))
            if changed:
                self._save_budget(con, endpoint, b)
            return b

    def budget(self, endpoint: str, limits: flight.Limits) -> flight.Budget:
        with self._lock:
            return self._budget(self._con, endpoint, limits)

    def in_flight(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint is None:
                return self._con.execute("SELECT count(*) FROM leases").fetchone()[0]
            return self._con.execute("SELECT count(*) FROM leases WHERE endpoint = ?", (endpoint,)).fetchone()[0]
