"""``[filters] where``: a DuckDB SQL predicate over each trajectory's fields.

The fields of a trajectory are its ``source_meta`` (the source row's own extra fields: SERA
``rollout``, ``line_level_recall``, CoderForge ``finish_reason``, ...) plus ``license``,
``reward``, ``instance_id``, ``repo``, ``outcome`` and ``source``. A row lacking a field the
predicate names has it NULL, so SQL's rules apply (``rollout = 'T2'`` is not true for it and the
row is skipped). Rows are evaluated in batches inside an in-memory DuckDB with file access
disabled; a row whose values cannot be evaluated (a type DuckDB cannot compare) is a counted skip.
DuckDB is loaded when a predicate is compiled: sampling without one does not carry it.
"""
from __future__ import annotations

import json
from typing import Any

from ..settings import ConfigError

BATCH = 256


def _columns(tree: Any, out: set[str]) -> set[str]:
    if isinstance(tree, dict):
        if tree.get("class") == "COLUMN_REF" and tree.get("column_names"):
            out.add(str(tree["column_names"][0]))
        for v in tree.values():
            _columns(v, out)
    elif isinstance(tree, list):
        for v in tree:
            _columns(v, out)
    return out


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split("LINE 1:")[0].split())[:300]  # DuckDB's own error, without its SQL excerpt


def trajectory_fields(traj) -> dict:
    fields = {k: v for k, v in traj.source_meta.items() if k != "_omitted"}
    fields.update(license=traj.license, reward=traj.reward, instance_id=traj.instance_id, repo=traj.repo,
                  outcome=traj.outcome, source=traj.source)
    return fields


class RowFilter:
    """A compiled ``where`` predicate; :meth:`keep_many` answers True / False / None (could not
    evaluate) per trajectory."""

    def __init__(self, predicate: str):
        if not isinstance(predicate, str):
            raise ConfigError(f"filters.where: expected a SQL predicate string, got {predicate!r}")
        import duckdb

        from ..warehouse.connect import scalar

        self.predicate = predicate.strip()
        self.errors = (duckdb.Error, ValueError, TypeError, OverflowError)  # what one row's values can raise
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        tree = json.loads(scalar(self.con, "SELECT json_serialize_sql(?)", [f"SELECT 1 WHERE ({self.predicate})"]))
        if tree.get("error"):
            raise ConfigError(f"filters.where: {self.predicate!r} is not a SQL predicate: {tree.get('error_message', '')}")
        self.columns = sorted(_columns(tree, set()))
        self.seen: set[str] = set()
        try:
            kind = scalar(self.con, f"SELECT typeof(({self.predicate})) FROM ({self._values(1)}) AS t(__i{self._names()})",
                          [0, *[None] * len(self.columns)])
        except duckdb.Error as e:
            raise ConfigError(f"filters.where: {self.predicate!r}: {_one_line(e)}") from None
        if kind not in ("BOOLEAN", "NULL", '"NULL"'):
            raise ConfigError(f"filters.where: {self.predicate!r} is a {kind}, not a true/false condition")

    def _names(self) -> str:
        return "".join(", " + '"' + c.replace('"', '""') + '"' for c in self.columns)

    def _values(self, n: int) -> str:
        row = "(" + ", ".join(["?"] * (len(self.columns) + 1)) + ")"
        return "VALUES " + ", ".join([row] * n)

    def _run(self, rows: list[list]) -> set[int]:
        sql = f"SELECT __i FROM ({self._values(len(rows))}) AS t(__i{self._names()}) WHERE ({self.predicate})"
        return {r[0] for r in self.con.execute(sql, [x for row in rows for x in row]).fetchall()}

    def keep_many(self, fields: list[dict]) -> list[bool | None]:
        rows = []
        for i, f in enumerate(fields):
            self.seen.update(k for k in self.columns if f.get(k) is not None)
            rows.append([i, *[f.get(c) for c in self.columns]])
        out: list[bool | None] = []
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            try:
                kept = self._run(chunk)
                out.extend(r[0] in kept for r in chunk)
            except self.errors:
                for r in chunk:  # one value DuckDB cannot take: find it row by row
                    try:
                        out.append(bool(self._run([r])))
                    except self.errors:
                        out.append(None)
        return out

    def unseen_columns(self) -> list[str]:
        """Columns the predicate names that no row had (a typo filters everything out)."""
        return [c for c in self.columns if c not in self.seen]


def compile_where(predicate: str | None) -> RowFilter | None:
    """The compiled predicate, or None when there is none; a bad one is a :class:`ConfigError`."""
    if predicate is None or (isinstance(predicate, str) and not predicate.strip()):
        return None
    return RowFilter(predicate)
