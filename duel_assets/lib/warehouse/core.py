"""One handle on the warehouse: connection, lock and dialect.

The IO manager, the judging-only read and the tests all go through :class:`Warehouse`; it hides
whether the tables live in a local DuckDB file, a DuckLake (catalog in PostgreSQL, data files on
shared storage) or MotherDuck. Tables are in schema ``duel`` and addressed as ``duel.<table>`` on
every connection it opens.

A partition's replace is one transaction (DELETE of its rows, then INSERT by name). On a DuckLake
several processes commit to the same table at once; a commit that finds another process's delete
committed meanwhile fails with a ``Transaction conflict``, and the whole partition write is run
again (bounded; the number of retries is returned, the IO manager puts it in metadata).
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ..system.locks import DEFAULT_LOCK_TIMEOUT_S, file_lock
from .connect import LAKE_ALIAS, open_lake, open_local, scalar, sql_str
from .target import DUCKLAKE, LOCAL, MOTHERDUCK, Target, WarehouseError, parse_target, target_from_env

SCHEMA = "duel"
MAX_CONFLICT_RETRIES = 12


def is_conflict(exc: BaseException) -> bool:
    """A DuckLake commit lost a race with another writer's commit; re-running the transaction is safe."""
    return "Transaction conflict" in str(exc)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:  # a failed DuckLake commit has already ended its transaction
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def _qi(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


@dataclass
class Retried:
    """What :meth:`Warehouse.in_transaction` did: how many conflicts it re-ran."""

    retries: int = 0


class Warehouse:
    """The tables of the pipeline, wherever they are (see ``target.py`` for the dialects)."""

    def __init__(self, target: Target | str | os.PathLike, data_path: str | None = None,
                 lock_timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S, max_conflict_retries: int = MAX_CONFLICT_RETRIES):
        self.target = target if isinstance(target, Target) else parse_target(target, data_path)
        self.lock_timeout_s = lock_timeout_s
        self.max_conflict_retries = max_conflict_retries
        self._checked: set[str] = set()  # tables known to match their schema in this process
        self._shared: duckdb.DuckDBPyConnection | None = None  # the attached DuckLake, reused by cursors

    @classmethod
    def from_env(cls, home: Path | None = None, **kwargs) -> Warehouse:
        """``$DUEL_WAREHOUSE`` / ``$DUEL_LAKE_DATA_PATH``, else ``<home>/warehouse.duckdb``."""
        return cls(target_from_env(home), **kwargs)

    @property
    def dialect(self) -> str:
        return self.target.dialect

    @property
    def label(self) -> str:
        return self.target.label

    def __repr__(self) -> str:
        return f"Warehouse({self.label!r})"

    # ------------------------------------------------------------ connections

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection on which ``duel.<table>`` names the warehouse's tables. For a local file
        it holds the inter-process lock (bounded by ``lock_timeout_s``) while open."""
        lock = self.target.lock_file
        if lock is None and self.dialect == DUCKLAKE:
            # loading the extensions and attaching the catalog costs ~0.5 s: do it once per process and
            # hand out cursors (each its own connection and transaction on the same attached lake)
            cur = self._lake_cursor()
            try:
                yield cur
            finally:
                cur.close()
            return
        if lock is None:
            con = self._open()
            try:
                yield con
            finally:
                con.close()
            return
        with file_lock(f"{lock}.lock", self.lock_timeout_s, what=f"warehouse {lock}",
                       setting="warehouse.lock_timeout_s"):
            con = self._open(read_only)
            try:
                yield con
            finally:
                con.close()

    def _lake_cursor(self) -> duckdb.DuckDBPyConnection:
        for attempt in range(2):
            if self._shared is None:
                self._shared = open_lake(self.target)
            try:
                cur = self._shared.cursor()
                cur.execute(f"USE {LAKE_ALIAS}")
                return cur
            except duckdb.Error:
                self.close()  # a broken catalog connection: attach again once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Drop the attached DuckLake kept for this process (if any)."""
        if self._shared is not None:
            try:
                self._shared.close()
            finally:
                self._shared = None

    def _open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        t = self.target
        if t.dialect == LOCAL:
            return open_local(t.location, read_only and Path(t.location).exists())
        if t.dialect == MOTHERDUCK:
            return duckdb.connect(t.location)
        return open_lake(t)

    # ------------------------------------------------------------ transactions

    def in_transaction(self, con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], None],
                       what: str) -> Retried:
        """Run ``work`` in one transaction; on a DuckLake conflict roll back and run it again
        (at most ``max_conflict_retries`` times, with growing random pauses)."""
        done = Retried()
        while True:
            try:
                con.execute("BEGIN TRANSACTION")
                work(con)
                con.execute("COMMIT")
                return done
            except duckdb.Error as e:
                _rollback(con)
                if not is_conflict(e):
                    raise
                if done.retries >= self.max_conflict_retries:
                    raise WarehouseError(f"{what}: still conflicting with other writers after "
                                         f"{done.retries + 1} attempts: {str(e).splitlines()[-1]}") from None
                done.retries += 1
                time.sleep(random.uniform(0.0, min(2.0, 0.05 * 2 ** done.retries)))

    # ------------------------------------------------------------ tables

    def table_exists(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        return bool(scalar(
            con, "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = ? AND table_name = ?", [SCHEMA, table]))

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
        return {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = ? AND table_name = ?", [SCHEMA, table]).fetchall()}

    def ensure_table(self, con: duckdb.DuckDBPyConnection, table: str, schema: Sequence[tuple[str, str]]) -> int:
        """Create ``duel.<table>`` from its declared schema and add columns it lacks (its own
        transaction, re-run on a conflict with another process creating it). Returns retries."""
        if table in self._checked:
            return 0
        retries = 0
        if not self.table_exists(con, table) or set(c for c, _ in schema) - self._columns(con, table):
            def create(c):
                c.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                c.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{_qi(table)} "
                          f"({', '.join(f'{_qi(n)} {t}' for n, t in schema)})")
                have = self._columns(c, table)
                for n, t in schema:
                    if n not in have:
                        c.execute(f"ALTER TABLE {SCHEMA}.{_qi(table)} ADD COLUMN {_qi(n)} {t}")

            retries = self.in_transaction(con, create, f"creating {SCHEMA}.{table}").retries
        self._checked.add(table)
        return retries

    def ensure_tables(self, schemas: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> int:
        """Create every declared table (run it before launching many writers at once)."""
        if schemas is None:
            from ..tables import SCHEMAS

            schemas = SCHEMAS
        with self.connect() as con:
            return sum(self.ensure_table(con, t, s) for t, s in schemas.items())

    def replace_partition(self, con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame,
                          schema: Sequence[tuple[str, str]] | None, column: str | None,
                          keys: Sequence[str] | None) -> int:
        """Replace the rows of ``keys`` (all rows when ``keys`` is None) with ``frame``, in one
        transaction; returns how many times it was re-run after a conflict."""
        if schema is None:  # a table without declared schema takes the frame's columns
            schema = [(c, _duck_type(frame[c])) for c in frame.columns]
        retries = self.ensure_table(con, table, schema)
        tbl = f"{SCHEMA}.{_qi(table)}"
        where, params = "", []
        if keys is not None:
            if column is None:
                raise ValueError(f"{table}: partition keys given without a partition column")
            where = f" WHERE {_qi(column)} IN ({', '.join('?' for _ in keys)})" if keys else " WHERE false"
            params = list(keys)
        cast = ", ".join(f"CAST({_qi(c)} AS {t}) AS {_qi(c)}" for c, t in schema if c in frame.columns)

        def write(c):
            c.execute(f"DELETE FROM {tbl}{where}", params)
            if len(frame):
                c.register("_duel_out", frame)
                try:
                    c.execute(f"INSERT INTO {tbl} BY NAME SELECT {cast} FROM _duel_out")
                finally:
                    c.unregister("_duel_out")

        return retries + self.in_transaction(con, write, f"writing {table} {list(keys or [])[:3]}").retries

    # ------------------------------------------------------------ reads

    def read_partition(self, table: str, prompt_file: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One partition's rows of a table (empty, with the declared columns, when the table is absent)."""
        from ..tables import SCHEMAS

        if self.dialect == LOCAL and not Path(self.target.location).exists():
            return pd.DataFrame(columns=[c for c, _ in SCHEMAS.get(table, [])])
        with self.connect(read_only=True) as con:
            if not self.table_exists(con, table):
                return pd.DataFrame(columns=[c for c, _ in SCHEMAS.get(table, [])])
            cols = ", ".join(_qi(c) for c in columns) if columns else "*"
            return con.execute(f"SELECT {cols} FROM {SCHEMA}.{_qi(table)} WHERE prompt_file = ?", [prompt_file]).fetchdf()

    def query(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        with self.connect(read_only=True) as con:
            return con.execute(sql, list(params or [])).fetchall()

    # ------------------------------------------------------------ upkeep

    def maintain(self, keep_hours: float = 24.0) -> dict:
        """DuckLake: merge small files, expire snapshots older than ``keep_hours`` and delete the
        data files no snapshot needs. Local file: CHECKPOINT. Returns counts of what it did."""
        with self.connect() as con:
            if self.dialect != DUCKLAKE:
                if self.dialect == LOCAL:
                    con.execute("CHECKPOINT")
                return {"dialect": self.dialect}
            older = f"now() - INTERVAL {float(keep_hours) * 3600:.0f} SECOND"
            out: dict[str, Any] = {"dialect": self.dialect, "keep_hours": keep_hours}
            snapshots = f"SELECT count(*) FROM ducklake_snapshots({sql_str(LAKE_ALIAS)})"
            out["snapshots_before"] = scalar(con, snapshots)
            calls = {
                "files_merged": f"CALL ducklake_merge_adjacent_files({sql_str(LAKE_ALIAS)})",
                "snapshots_expired": f"CALL ducklake_expire_snapshots({sql_str(LAKE_ALIAS)}, older_than => {older})",
                "files_deleted": f"CALL ducklake_cleanup_old_files({sql_str(LAKE_ALIAS)}, older_than => {older})",
            }
            out["conflict_retries"] = 0
            for name, sql in calls.items():
                rows: list = []

                def call(c: duckdb.DuckDBPyConnection, sql: str = sql, rows: list = rows) -> None:
                    rows.extend(c.execute(sql).fetchall())

                out["conflict_retries"] += self.in_transaction(con, call, name).retries
                out[name] = len(rows)
            out["snapshots_after"] = scalar(con, snapshots)
            return out


def _duck_type(series: pd.Series) -> str:
    kind = series.dtype.kind
    return {"b": "BOOLEAN", "i": "BIGINT", "u": "UBIGINT", "f": "DOUBLE", "M": "TIMESTAMP"}.get(kind, "VARCHAR")
