"""The call store's logic, in SQL both SQLite and PostgreSQL speak.

A store keeps, for a whole deployment:

* ``calls``: every completed call by its key (content and endpoint, :mod:`.types`) with the endpoint
  it was bought from, committed the moment it lands (a kill -9 loses at most the calls still in
  flight); failures are never stored; a completed call is never overwritten;
* ``leases``: one row per request in flight anywhere, renewed by its holder and reaped when the
  holder dies (its process is gone, or it stopped renewing);
* ``holders``: who is making calls and how many of its requests wait for a slot;
* ``budget``: per endpoint, the shared concurrency window and pacing clocks (:mod:`.flight`);
* ``downgrades``: per endpoint and model, the switches it refuses (:mod:`.store_downgrades`);
* ``batches``, ``batch_requests``: provider batches and the requests each carries (:mod:`.store_batches`);
* ``spend``: the deployment's paid cost, against ``calls.max_usd`` (:mod:`.store_spend`).

Every decision runs in one transaction that holds the endpoint's lock, so two processes never grant
the same slot or the same body. Subclasses supply the connection, the transaction and the DDL.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from ..system.processes import pid_alive
from . import flight
from .store_batches import StoreBatches
from .store_downgrades import StoreDowngrades
from .store_inventory import HOST, StoreInventory
from .store_spend import StoreSpend

BUDGET_COLS = ("window", "last_decrease", "pause_until", "next_req", "next_tok", "learned_rpm", "learned_tpm", "probed")
_QUOTED = ", ".join(f'"{c}"' for c in BUDGET_COLS)
# requests in flight to the endpoint, this holder's, other holders waiting, other holders contending
_COUNTS = ("SELECT (SELECT count(*) FROM leases WHERE endpoint = ?), "
           "(SELECT count(*) FROM leases WHERE endpoint = ? AND holder = ?), "
           "(SELECT count(*) FROM holders WHERE endpoint = ? AND holder != ? AND waiting > 0), "
           "(SELECT count(*) FROM holders h WHERE h.endpoint = ? AND h.holder != ? "
           "AND (h.waiting > 0 OR EXISTS (SELECT 1 FROM leases l WHERE l.holder = h.holder)))")
INSERT_CALL = ("INSERT INTO calls (key, role, model, created, response, endpoint, standin) VALUES (?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (key) DO NOTHING")


def _row(key: str, role: str, model: str, now: float, response: dict, endpoint: str | None) -> tuple:
    return (key, role, model, now, json.dumps(response, ensure_ascii=False), endpoint, int(bool(response.get("standin"))))




class CallStoreBase(StoreDowngrades, StoreInventory, StoreSpend, StoreBatches):
    lease_ttl_s = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_reap = 0.0
        # what this process last saw of each endpoint's budget: saves a read per completed call
        # while nothing there can change (probed, window at the bound); a 429 here resets it
        self._probed: dict[str, bool] = {}
        self._window_full: dict[str, bool] = {}
        self.last_window: dict[str, float] = {}  # the endpoint's window as of this process's last claim
        self._waiting: dict[str, bool] = {}  # holder -> whether the store last heard it has keys waiting

    # -- completed calls ---------------------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        with self._read() as con:
            row = con.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, dict]:
        with self._read() as con:
            return self._completed(con, keys, chunk)

    @staticmethod
    def _completed(con, keys, chunk: int = 500) -> dict[str, dict]:
        out: dict[str, dict] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), chunk):
            part = uniq[i: i + chunk]
            q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(part))})"
            out.update({k: json.loads(v) for k, v in con.execute(q, part).fetchall()})
        return out

    def put(self, key: str, role: str, model: str, response: dict[str, Any], endpoint: str | None = None,
            usd: float | None = None) -> bool:
        """Insert-if-absent (``usd``: what it cost, added to the spend when stored); True when this
        call stored it."""
        with self._tx() as con:
            cur = con.execute(INSERT_CALL, _row(key, role, model, time.time(), response, endpoint))
            if cur.rowcount == 1:
                self.add_spend(con, usd)
            return cur.rowcount == 1

    def items(self) -> list[tuple[str, dict]]:
        with self._read() as con:
            rows = con.execute("SELECT key, response FROM calls").fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def count(self) -> int:
        with self._read() as con:
            return con.execute("SELECT count(*) FROM calls").fetchone()[0]

    # -- holders and leases ------------------------------------------------------------------------
    def register(self, holder: str, endpoint: str) -> None:
        with self._tx() as con:
            con.execute("INSERT INTO holders (holder, host, pid, endpoint, heartbeat, waiting) VALUES (?, ?, ?, ?, ?, 0) "
                        "ON CONFLICT (holder) DO UPDATE SET heartbeat = excluded.heartbeat",
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
        for holder, pid in con.execute("SELECT holder, pid FROM holders WHERE host = ? AND pid != ?", (HOST, os.getpid())).fetchall():
            if not pid_alive(pid):
                con.execute("DELETE FROM leases WHERE holder = ?", (holder,))
                con.execute("DELETE FROM holders WHERE holder = ?", (holder,))

    def _budget(self, con, endpoint: str) -> flight.Budget:
        row = con.execute(f"SELECT {_QUOTED} FROM budget WHERE endpoint = ?", (endpoint,)).fetchone()
        return flight.Budget() if row is None else flight.Budget(*[float(v or 0.0) for v in row])

    def _save_budget(self, con, endpoint: str, b: flight.Budget) -> None:
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in BUDGET_COLS)
        con.execute(f"INSERT INTO budget (endpoint, {_QUOTED}) VALUES (?, {', '.join('?' * len(BUDGET_COLS))}) "
                    f"ON CONFLICT (endpoint) DO UPDATE SET {sets}", (endpoint, *[getattr(b, c) for c in BUDGET_COLS]))

    def claim(self, holder: str, endpoint: str, wanted: list[flight.Wanted], limits: flight.Limits,
              waiting_after: int | None = None) -> tuple[dict[str, dict], flight.Decision, set[str]]:
        """In one transaction: the wanted keys already completed (their responses), the keys this
        holder may send now (leased to it), and the keys another holder is sending (neither: that
        holder's reply will land in ``calls``). ``waiting_after``: how many of this holder's keys
        still wait afterwards (for fairness between holders)."""
        now = time.time()
        with self._tx(endpoint) as con:
            self._reap(con, now)
            # leases first, completed calls second: a holder's completion (stored call and released
            # lease, one commit) that lands in between shows as completed, never as free to send
            held: set[str] = set()
            if wanted:
                q = f"SELECT key FROM leases WHERE key IN ({','.join('?' * len(wanted))}) AND holder != ?"
                held = {k for (k,) in con.execute(q, [*(w.key for w in wanted), holder]).fetchall()}
            done = self._completed(con, [w.key for w in wanted]) if wanted else {}
            rest = [w for w in wanted if w.key not in done]
            held -= set(done)
            live, mine, others_waiting, contenders = con.execute(_COUNTS, (endpoint, endpoint, holder, endpoint, holder, endpoint, holder)).fetchone()
            b = self._budget(con, endpoint)
            self._probed[endpoint] = bool(b.probed)
            self._window_full[endpoint] = b.window >= limits.concurrency
            self.last_window[endpoint] = flight.effective_window(limits, b)
            before = (b.next_req, b.next_tok)
            candidates = [w for w in rest if w.key not in held]
            refused: list[str] = []
            spent = 0.0
            if limits.max_usd:
                candidates, refused, spent = self._within_budget(con, candidates, limits.max_usd)
            decision = flight.decide(candidates, limits, b, now, int(live), int(mine),
                                     int(contenders) + 1, bool(others_waiting))
            decision.refused, decision.spent = refused, spent
            if decision.granted:
                worst = {w.key: w.usd for w in candidates}
                con.executemany("INSERT INTO leases (key, holder, endpoint, expires, usd) VALUES (?, ?, ?, ?, ?)",
                                [(k, holder, endpoint, now + self.lease_ttl_s, worst[k]) for k in decision.granted])
            if (b.next_req, b.next_tok) != before:
                self._save_budget(con, endpoint, b)
            waiting = len(rest) - len(decision.granted) if waiting_after is None else waiting_after
            if self._waiting.get(holder) != (waiting > 0):  # others only need to know whether we wait
                con.execute("UPDATE holders SET waiting = ?, heartbeat = ? WHERE holder = ?", (waiting, now, holder))
                self._waiting[holder] = waiting > 0
        return done, decision, held

    def complete(self, holder: str, endpoint: str, key: str, role: str, model: str, response: dict,
                 limits: flight.Limits, usd: float | None = None) -> bool:
        """Store a completed call and release its lease (one transaction), its cost ``usd`` added to
        the spend; additive increase of the window. True when this call stored it."""
        now = time.time()
        quiet = self._probed.get(endpoint) and (not limits.adaptive or self._window_full.get(endpoint))
        with self._tx(endpoint) as con:  # never in the middle of another holder's claim
            cur = con.execute(INSERT_CALL, _row(key, role, model, now, response, endpoint))
            if cur.rowcount == 1:
                self.add_spend(con, usd)
            con.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))
            if not quiet:
                b = self._budget(con, endpoint)
                if flight.on_success(limits, b):
                    self._save_budget(con, endpoint, b)
                self._probed[endpoint] = bool(b.probed)
                self._window_full[endpoint] = b.window >= limits.concurrency
            return cur.rowcount == 1

    def release(self, holder: str, key: str, endpoint: str | None = None) -> None:
        """Give a lease back after a failed attempt (the endpoint did answer: the probe is over)."""
        probe_over = endpoint is not None and not self._probed.get(endpoint)
        with self._tx(endpoint if probe_over else None) as con:
            con.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))
            if probe_over and endpoint is not None:
                b = self._budget(con, endpoint)
                if flight.on_finished(b):
                    self._save_budget(con, endpoint, b)
                self._probed[endpoint] = True

    def feedback(self, endpoint: str, limits: flight.Limits, rate_limited: bool, retry_after: float | None,
                 headers: dict | None) -> flight.Budget:
        """What one reply says about the endpoint's limits: a 429 (decrease, pause), and announced
        limits from ``x-ratelimit-*`` headers. Returns the budget after the change."""
        now = time.time()
        with self._tx(endpoint) as con:
            b = self._budget(con, endpoint)
            changed = False
            if rate_limited:
                live = con.execute("SELECT count(*) FROM leases WHERE endpoint = ?", (endpoint,)).fetchone()[0]
                flight.on_rate_limited(limits, b, now, retry_after, int(live) + 1)
                self._window_full[endpoint] = False
                changed = True
            if headers:
                changed |= flight.on_headers(b, now, headers.get("limit_requests"), headers.get("limit_tokens"),
                                             headers.get("remaining_requests"), headers.get("reset_requests_s"))
            if changed:
                self._save_budget(con, endpoint, b)
            return b

    def budget(self, endpoint: str, limits: flight.Limits | None = None) -> flight.Budget:
        with self._read() as con:
            return self._budget(con, endpoint)

    def in_flight(self, endpoint: str | None = None) -> int:
        with self._read() as con:
            if endpoint is None:
                return con.execute("SELECT count(*) FROM leases").fetchone()[0]
            return con.execute("SELECT count(*) FROM leases WHERE endpoint = ?", (endpoint,)).fetchone()[0]
