"""The call store for many workers: PostgreSQL (``DUEL_CALL_CACHE=postgresql://...`` or a libpq keyword
conninfo, ``host=... dbname=...``).

The same tables and the same decisions as the SQLite store (:mod:`.store_base`), so a call is paid
once per deployment rather than once per worker: completed calls are inserted if absent by content
key, failures never stored; a transaction-scoped advisory lock per endpoint serialises the flight
decisions of every worker; a worker opening the store changes the schema only when it is not current,
and a write PostgreSQL rolls back to end a deadlock is made again (:func:`_retried`).
"""
from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..settings import ConfigError, call_store_kind, redact, scrub
from ..settings.secrets import hidden_values
from .store_base import CallStoreBase

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created DOUBLE PRECISION, response TEXT,
                                  endpoint TEXT, standin INTEGER);
ALTER TABLE calls ADD COLUMN IF NOT EXISTS endpoint TEXT;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS standin INTEGER;
CREATE INDEX IF NOT EXISTS calls_endpoint ON calls (endpoint, standin);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, endpoint TEXT NOT NULL,
                                   expires DOUBLE PRECISION NOT NULL);
ALTER TABLE leases ADD COLUMN IF NOT EXISTS usd DOUBLE PRECISION;
CREATE TABLE IF NOT EXISTS spend (scope TEXT PRIMARY KEY, usd DOUBLE PRECISION NOT NULL, backfilled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, input_file_id TEXT, status TEXT,
                                    created DOUBLE PRECISION, holder TEXT, host TEXT, usd DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, role TEXT, model TEXT);
ALTER TABLE batches ADD COLUMN IF NOT EXISTS usd DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS batch_requests_batch ON batch_requests (batch_id);
CREATE INDEX IF NOT EXISTS leases_holder ON leases (holder);
CREATE TABLE IF NOT EXISTS holders (holder TEXT PRIMARY KEY, host TEXT, pid INTEGER, endpoint TEXT,
                                    heartbeat DOUBLE PRECISION, waiting INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS budget (endpoint TEXT PRIMARY KEY, "window" DOUBLE PRECISION, last_decrease DOUBLE PRECISION,
                                   pause_until DOUBLE PRECISION, next_req DOUBLE PRECISION, next_tok DOUBLE PRECISION,
                                   learned_rpm DOUBLE PRECISION, learned_tpm DOUBLE PRECISION, probed DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS downgrades (endpoint TEXT NOT NULL, model TEXT NOT NULL, switch TEXT NOT NULL,
                                       value TEXT NOT NULL, reason TEXT, created DOUBLE PRECISION,
                                       PRIMARY KEY (endpoint, model, switch));
"""
# what SCHEMA makes, to see whether a database already has it all
_TABLES = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))
_COLUMNS = set(re.findall(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", SCHEMA))
_INDEXES = set(re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", SCHEMA))


def _schema_current(con) -> bool:
    """Whether every table, added column and index of SCHEMA is there, read from the catalog alone:
    it takes no lock on the tables (``ALTER TABLE ... IF NOT EXISTS`` takes an exclusive one even when
    the column exists, which deadlocks with a worker's claim reading ``leases`` then ``calls``)."""
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                        "WHERE table_schema = current_schema()").fetchall()}
    columns = set(con.execute("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE table_schema = current_schema()").fetchall())
    indexes = {i for (i,) in con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()").fetchall()}
    return _TABLES <= tables and _COLUMNS <= columns and _INDEXES <= indexes


class _Exec:
    """``execute`` / ``executemany`` with ``?`` placeholders on a psycopg2 cursor."""

    def __init__(self, cur):
        self.cur = cur

    def execute(self, sql: str, params=()):
        self.cur.execute(sql.replace("?", "%s"), tuple(params))
        return self.cur

    def executemany(self, sql: str, rows):
        self.cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
        return self.cur


RETRIES = 4  # a write that PostgreSQL rolled back to end a deadlock is made again, this many times at most


def _retried(method):
    """``method`` (one transaction) made again when PostgreSQL rolls it back whole to end a deadlock
    or a serialization conflict with another worker's transaction (SQLSTATE class 40)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        from psycopg2.errors import TransactionRollbackError

        for attempt in range(RETRIES + 1):
            try:
                return method(self, *args, **kwargs)
            except TransactionRollbackError:
                if attempt == RETRIES:
                    raise
                self._forget_shortcuts()
                time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    return run


# every write of the store: each is one transaction, rolled back whole before it is made again
RETRIED = ("put", "register", "unregister", "renew", "claim", "complete", "release", "feedback", "ensure_spend",
           "claim_for_batch", "batch_uploaded", "batch_created", "batch_abandoned", "batch_status", "downgrade")


class PgCallStore(CallStoreBase):
    retries = 0  # decisions made again after PostgreSQL rolled them back

    def _forget_shortcuts(self) -> None:
        """After a rollback: what this process remembered from the rolled-back transaction is read again."""
        self.retries += 1
        self._waiting.clear()
        self._probed.clear()
        self._window_full.clear()
        self._last_reap = 0.0

    def __init__(self, dsn: str):
        super().__init__()
        import psycopg2  # from dagster-postgres

        self.dsn = dsn
        try:
            self._con = psycopg2.connect(dsn)
        except psycopg2.Error as e:  # libpq's text may quote parts of the conninfo: scrubbed
            reason = scrub(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, hidden_values(dsn))
            raise ConfigError(f"DUEL_CALL_CACHE: cannot connect to PostgreSQL {redact(dsn)}: {reason}") from None
        self._con.autocommit = False
        with self._tx() as con:
            if _schema_current(con):  # every worker's start, while others claim: no DDL, no table lock
                return
            con.execute("SELECT pg_advisory_xact_lock(hashtext('duel_call_store_schema'))")
            if not _schema_current(con):  # first use, or an older schema: one worker at a time
                for stmt in filter(str.strip, SCHEMA.split(";")):
                    con.execute(stmt)

    @contextmanager
    def _tx(self, endpoint: str | None = None) -> Iterator[_Exec]:
        with self._lock:
            cur = self._con.cursor()
            try:
                ex = _Exec(cur)
                if endpoint is not None:
                    ex.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"duel_calls:{endpoint}",))
                yield ex
            except BaseException:
                self._con.rollback()
                raise
            else:
                self._con.commit()
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[_Exec]:
        with self._tx() as ex:
            yield ex

    def close(self) -> None:
        with self._lock:
            self._con.close()


for _name in RETRIED:
    setattr(PgCallStore, _name, _retried(getattr(CallStoreBase, _name)))


def open_store(location: str):
    """The call store named by ``location``: PostgreSQL (a ``postgresql://`` URL or a libpq keyword
    conninfo) or a SQLite file path; anything else is a :class:`ConfigError`."""
    if call_store_kind(location) == "postgres":
        return PgCallStore(location)
    from .store import CallStore

    return CallStore(location)
