"""What a call store holds, per endpoint and model, and removing an endpoint's calls.

Also the dialect every store supplies (:class:`StoreDialect`): a transaction and a read, in SQL
both SQLite and PostgreSQL speak; and how a store tells a holder of this host whose process is gone.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

UNKNOWN = "unknown"  # calls stored before the endpoint was part of a call's identity
HOST = socket.gethostname()


class StoreDialect:
    @contextmanager
    def _tx(self, endpoint: str | None = None) -> Iterator[Any]:
        """A transaction (holding ``endpoint``'s lock) yielding an object with ``execute`` /
        ``executemany`` that take ``?`` placeholders and return a cursor."""
        raise NotImplementedError
        yield

    @contextmanager
    def _read(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        raise NotImplementedError


def _where(endpoint: str) -> tuple[str, tuple]:
    return ("endpoint IS NULL", ()) if endpoint == UNKNOWN else ("endpoint = ?", (endpoint,))


class StoreInventory(StoreDialect):
    def holdings(self) -> list[dict]:
        """One row per endpoint and model: calls, how many the stand-in answered, first and last
        stored (epoch seconds). Calls stored before endpoints were recorded have endpoint ``unknown``
        (they are never reused)."""
        with self._read() as con:
            rows = con.execute(
                "SELECT endpoint, model, count(*), sum(standin), min(created), max(created) FROM calls "
                "GROUP BY endpoint, model ORDER BY endpoint, model").fetchall()
        return [{"endpoint": e or UNKNOWN, "model": m, "calls": int(n), "standin": int(s or 0), "first": first, "last": last}
                for e, m, n, s, first, last in rows]

    def remove_endpoint(self, endpoint: str) -> int:
        """Delete every call stored for ``endpoint`` (as :func:`..settings.endpoint_id` gives it, or
        ``unknown``), its pacing state and the refusals learnt from it; the number of calls removed.
        Requests in flight keep their leases."""
        where, args = _where(endpoint)
        with self._tx(endpoint) as con:
            n = con.execute(f"SELECT count(*) FROM calls WHERE {where}", args).fetchone()[0]
            con.execute(f"DELETE FROM calls WHERE {where}", args)
            con.execute("DELETE FROM budget WHERE endpoint = ?", (endpoint,))
            con.execute("DELETE FROM downgrades WHERE endpoint = ?", (endpoint,))
        return int(n)

    def has_standin_replies(self, endpoint: str) -> bool:
        with self._read() as con:
            return con.execute("SELECT 1 FROM calls WHERE endpoint = ? AND standin = 1 LIMIT 1",
                               (endpoint,)).fetchone() is not None

    def remove_standin_replies(self, endpoint: str) -> int:
        """Delete ``endpoint``'s calls the stand-in answered (they cost nothing); how many."""
        with self._tx(endpoint) as con:
            return int(con.execute("DELETE FROM calls WHERE endpoint = ? AND standin = 1", (endpoint,)).rowcount)
