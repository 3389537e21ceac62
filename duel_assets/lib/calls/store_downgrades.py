"""What a call store remembers of each endpoint's refusals (:mod:`.downgrades`).

One row per endpoint, model and switch: the value the switch is turned down to, the refusal that
taught it (in the provider's words) and when. A row only ever moves further down, so processes
that learn the same refusal at once agree, and each learning is stored (and counted) once.
"""
from __future__ import annotations

import time

from . import downgrades
from .store_inventory import StoreDialect


class StoreDowngrades(StoreDialect):
    def downgrades(self, endpoint: str) -> downgrades.Downgrades:
        with self._read() as con:
            rows = con.execute("SELECT model, switch, value FROM downgrades WHERE endpoint = ?", (endpoint,)).fetchall()
        return downgrades.Downgrades.from_rows([(m, s, v) for m, s, v in rows])

    def downgrade(self, endpoint: str, model: str, switch: str, value: str, reason: str) -> bool:
        """Remember that ``endpoint`` refuses ``switch`` for ``model`` (``*``: every model) above
        ``value``; True when this call stored it (nobody had learnt it, or less of it, before)."""
        with self._tx(endpoint) as con:
            row = con.execute("SELECT value FROM downgrades WHERE endpoint = ? AND model = ? AND switch = ?",
                              (endpoint, model, switch)).fetchone()
            if not downgrades.further(switch, row[0] if row else None, value):
                return False
            con.execute("INSERT INTO downgrades (endpoint, model, switch, value, reason, created) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (endpoint, model, switch) DO UPDATE SET value = excluded.value, "
                        "reason = excluded.reason, created = excluded.created",
                        (endpoint, model, switch, value, reason[:300], time.time()))
            return True

    def downgrade_rows(self) -> list[dict]:
        """Every endpoint's downgrades, for listing."""
        with self._read() as con:
            rows = con.execute("SELECT endpoint, model, switch, value, reason, created FROM downgrades "
                               "ORDER BY endpoint, model, switch").fetchall()
        return [dict(zip(("endpoint", "model", "switch", "value", "reason", "created"), r)) for r in rows]
