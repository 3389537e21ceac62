"""Removing one partition's data: its rows in every warehouse table and its files. No Dagster imports.

The Dagster side (the partition's registration and materialization history) is removed by
``duel-assets forget``, which calls these.
"""
from __future__ import annotations

from pathlib import Path

import duckdb

from .locks import is_local, warehouse_lock
from .settings import Paths, validate_partition_key


def _tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT DISTINCT table_schema, table_name FROM information_schema.columns "
        "WHERE column_name = 'prompt_file' ORDER BY 1, 2").fetchall()


def partition_rows(database: str, key: str, delete: bool = False) -> dict[str, int]:
    """Rows of partition ``key`` per table (``schema.table``) in every table with a ``prompt_file``
    column; with ``delete``, those rows are deleted."""
    validate_partition_key(key)
    if is_local(database) and not Path(database).exists():
        return {}
    with warehouse_lock(database):
        con = duckdb.connect(database, read_only=not delete)
        try:
            out = {}
            for schema, table in _tables(con):
                name = f'"{schema}"."{table}"'
                (n,) = con.execute(f"SELECT count(*) FROM {name} WHERE prompt_file = ?", [key]).fetchone()
                if n and delete:
                    con.execute(f"DELETE FROM {name} WHERE prompt_file = ?", [key])
                out[f"{schema}.{table}"] = n
            return out
        finally:
            con.close()


def remove_files(paths: Paths, key: str) -> list[Path]:
    """Delete the partition's files (prompt file first, so no sensor registers it again); returns them."""
    files = paths.partition_files(key)
    for f in files:
        f.unlink(missing_ok=True)
    return files
