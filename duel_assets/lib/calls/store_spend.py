"""What a call store counts of the deployment's spend (:mod:`.budget`).

``spend`` holds one row: the USD paid for every completed call, added in the transaction that stores
the call. The first session with a budget counts the calls stored before (at today's prices) once.
Each lease carries its request's worst-case cost, so a claim sees paid + in flight for every
process of the deployment at once.
"""
from __future__ import annotations

import json

from . import flight
from .budget import Pricing
from .store_inventory import StoreDialect

SCOPE = "deployment"
ADD_TO_SPEND = ("INSERT INTO spend (scope, usd, backfilled) VALUES (?, ?, 0) "
                "ON CONFLICT (scope) DO UPDATE SET usd = spend.usd + excluded.usd")


class StoreSpend(StoreDialect):
    def add_spend(self, con, usd: float | None) -> None:
        """Inside the transaction that stored a call: its cost added to the deployment's spend."""
        if usd:
            con.execute(ADD_TO_SPEND, (SCOPE, float(usd)))

    def ensure_spend(self, pricing: Pricing) -> float:
        """The deployment's paid cost, counting once (at ``pricing``) the calls stored before the
        spend was first counted. The row is locked first, so a call landing meanwhile is counted
        exactly once: in the sum, or by its own addition after this commits."""
        with self._tx() as con:
            con.execute("INSERT INTO spend (scope, usd, backfilled) VALUES (?, 0, 0) ON CONFLICT (scope) DO NOTHING", (SCOPE,))
            con.execute("UPDATE spend SET usd = usd WHERE scope = ?", (SCOPE,))
            usd, done = con.execute("SELECT usd, backfilled FROM spend WHERE scope = ?", (SCOPE,)).fetchone()
            if done:
                return float(usd)
            total = sum(pricing.paid(model or "", json.loads(resp)) for model, resp in
                        con.execute("SELECT model, response FROM calls").fetchall())
            con.execute("UPDATE spend SET usd = ?, backfilled = 1 WHERE scope = ?", (total, SCOPE))
            return total

    def recent_calls(self, limit: int) -> list[tuple[str, str, str]]:
        """(model, role, response JSON) of the ``limit`` most recently stored calls."""
        with self._read() as con:
            return con.execute("SELECT model, role, response FROM calls ORDER BY created DESC LIMIT ?", (limit,)).fetchall()

    def spent(self) -> float:
        with self._read() as con:
            row = con.execute("SELECT usd FROM spend WHERE scope = ?", (SCOPE,)).fetchone()
        return float(row[0]) if row else 0.0

    def _within_budget(self, con, candidates: list[flight.Wanted], cap: float
                       ) -> tuple[list[flight.Wanted], list[str], float]:
        """(the candidates that may start now within ``cap``, the keys that never can, paid so far).
        Paid only grows: a request whose worst case does not fit beside it is refused; one that
        does not fit beside the requests in flight waits for them to land."""
        row = con.execute("SELECT usd FROM spend WHERE scope = ?", (SCOPE,)).fetchone()
        spent = float(row[0]) if row else 0.0
        in_flight = float(con.execute("SELECT coalesce(sum(usd), 0) FROM leases").fetchone()[0] or 0.0)
        room = cap - spent - in_flight
        fit, refused = [], []
        for w in candidates:
            if spent + w.usd > cap:
                refused.append(w.key)
            elif w.usd <= room:
                fit.append(w)
                room -= w.usd
        return fit, refused, spent
