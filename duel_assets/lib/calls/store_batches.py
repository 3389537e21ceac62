"""What a call store remembers of provider batches (:mod:`.batch`).

``batches``: one row per batch submitted (or being submitted) to an endpoint, with its input file
and status; ``batch_requests``: which batch carries each request. A request is in at most one live
batch: it is claimed for a batch in the transaction that records it, so two processes never submit
the same body, and a re-launched run finds the batch its requests are in and polls it instead of
submitting them again. A batch being submitted (``pending:...``) whose holder died is either found
on the endpoint by its input file (adopted) or forgotten (its requests are submitted again: the
endpoint never created it).
"""
from __future__ import annotations

import time
import uuid

from ..system.processes import pid_alive
from .store_inventory import HOST, StoreDialect

TERMINAL = ("completed", "expired", "failed", "cancelled")
_DONE = ", ".join(f"'{s}'" for s in TERMINAL)


class StoreBatches(StoreDialect):
    @staticmethod
    def _completed(con, keys, chunk: int = 500) -> dict[str, dict]:  # the store's own (:mod:`.store_base`)
        raise NotImplementedError

    def claim_for_batch(self, holder: str, endpoint: str, wanted: list[tuple[str, str, str, float]], cap: float = 0.0
                        ) -> tuple[dict[str, dict], dict[str, str], str | None, list[str], dict[str, float]]:
        """``wanted``: (key, role, model, worst-case USD). In one transaction: (completed responses,
        key -> live batch carrying it, the pending batch id claimed for the rest or None, the keys
        claimed, the keys left out by the budget ``cap`` with the paid total when they could never
        fit, or -1 when they fit once what is in flight lands). A pending batch holds the worst case
        of its requests until it ends."""
        keys = [k for k, _, _, _ in wanted]
        now = time.time()
        with self._tx(endpoint) as con:
            done = self._completed(con, keys)
            live: dict[str, str] = {}
            stale: list[str] = []
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                q = (f"SELECT r.key, r.batch_id, coalesce(b.status, '') FROM batch_requests r LEFT JOIN batches b "
                     f"ON b.id = r.batch_id WHERE r.key IN ({','.join('?' * len(part))})")
                for key, batch_id, status in con.execute(q, part).fetchall():
                    if key in done:
                        continue
                    if status in TERMINAL or not status:  # it errored or expired there: free to submit again
                        stale.append(key)
                    else:
                        live[key] = batch_id
            if stale:
                con.executemany("DELETE FROM batch_requests WHERE key = ?", [(k,) for k in stale])
            rest = [w for w in wanted if w[0] not in done and w[0] not in live]
            left: dict[str, float] = {}
            if cap and rest:
                rest, left = self._batch_budget(con, rest, cap)
            pending = None
            if rest:
                pending = f"pending:{uuid.uuid4().hex}"
                con.execute("INSERT INTO batches (id, endpoint, status, created, holder, host, usd) "
                            "VALUES (?, ?, 'submitting', ?, ?, ?, ?)", (pending, endpoint, now, holder, HOST, sum(w[3] for w in rest)))
                con.executemany("INSERT INTO batch_requests (key, batch_id, role, model) VALUES (?, ?, ?, ?)",
                                [(k, pending, r, m) for k, r, m, _ in rest])
        return done, live, pending, [w[0] for w in rest], left

    def _batch_budget(self, con, rest: list[tuple[str, str, str, float]], cap: float
                      ) -> tuple[list[tuple[str, str, str, float]], dict[str, float]]:
        row = con.execute("SELECT usd FROM spend WHERE scope = 'deployment'").fetchone()
        spent = float(row[0]) if row else 0.0
        leased = float(con.execute("SELECT coalesce(sum(usd), 0) FROM leases").fetchone()[0] or 0.0)
        batched = float(con.execute(f"SELECT coalesce(sum(usd), 0) FROM batches WHERE status NOT IN ({_DONE})").fetchone()[0] or 0.0)
        room = cap - spent - leased - batched
        fit, left = [], {}
        for w in rest:
            if spent + w[3] > cap:
                left[w[0]] = spent
            elif w[3] <= room:
                fit.append(w)
                room -= w[3]
            else:
                left[w[0]] = -1.0
        return fit, left

    def batch_uploaded(self, pending: str, input_file_id: str) -> None:
        with self._tx() as con:
            con.execute("UPDATE batches SET input_file_id = ? WHERE id = ?", (input_file_id, pending))

    def batch_created(self, pending: str, batch_id: str, status: str = "in_progress") -> None:
        """The endpoint created ``batch_id`` for the requests claimed under ``pending``."""
        with self._tx() as con:
            row = con.execute("SELECT endpoint, input_file_id, status, created, holder, host, usd FROM batches WHERE id = ?",
                              (pending,)).fetchone()
            if row is None:
                return
            con.execute("INSERT INTO batches (id, endpoint, input_file_id, status, created, holder, host, usd) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", (batch_id, row[0], row[1], status, *row[3:]))
            con.execute("UPDATE batch_requests SET batch_id = ? WHERE batch_id = ?", (batch_id, pending))
            con.execute("DELETE FROM batches WHERE id = ?", (pending,))

    def batch_abandoned(self, pending: str) -> None:
        """Submitting failed before the endpoint created a batch: its requests are free again."""
        with self._tx() as con:
            con.execute("DELETE FROM batch_requests WHERE batch_id = ?", (pending,))
            con.execute("DELETE FROM batches WHERE id = ?", (pending,))

    def orphaned_submissions(self, endpoint: str) -> list[tuple[str, str | None]]:
        """(pending id, input file id) of submissions whose holder on this host is gone, or that
        stayed unfinished for an hour."""
        with self._read() as con:
            rows = con.execute("SELECT id, input_file_id, holder, host, created FROM batches WHERE endpoint = ? "
                               "AND status = 'submitting'", (endpoint,)).fetchall()
        out = []
        for pending, file_id, holder, host, created in rows:
            pid = int(str(holder).split(":")[0]) if str(holder).split(":")[0].isdigit() else -1
            if (host == HOST and not pid_alive(pid)) or time.time() - float(created or 0) > 3600:
                out.append((pending, file_id))
        return out

    def batch_status(self, batch_id: str, status: str) -> None:
        with self._tx() as con:
            con.execute("UPDATE batches SET status = ? WHERE id = ?", (status, batch_id))

    def batch_rows(self, batch_id: str) -> dict[str, tuple[str, str]]:
        """key -> (role, model) of the requests ``batch_id`` carries."""
        with self._read() as con:
            rows = con.execute("SELECT key, role, model FROM batch_requests WHERE batch_id = ?", (batch_id,)).fetchall()
        return {k: (r, m) for k, r, m in rows}

    def batches_of(self, endpoint: str | None = None) -> list[tuple[str, str]]:
        """(batch id, status) of every batch submitted (to ``endpoint``), oldest first."""
        with self._read() as con:
            if endpoint is None:
                return con.execute("SELECT id, status FROM batches ORDER BY created").fetchall()
            return con.execute("SELECT id, status FROM batches WHERE endpoint = ? ORDER BY created", (endpoint,)).fetchall()
