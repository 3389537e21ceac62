"""Removing one partition's data: its rows in every warehouse table, its files, its place in the
history index.

The Dagster side (the partition's registration and materialization history) is removed by
``duel-assets forget``, which calls these.
"""
from __future__ import annotations

from pathlib import Path

from .export.paths import partition_files
from .sampling.curation.near_dup_index import NearDupIndex
from .sampling.history_index import HistoryIndex
from .settings import BUCKETS, Paths, validate_partition_key
from .warehouse import Warehouse
from .warehouse.connect import scalar

_TABLES = ("SELECT DISTINCT table_schema, table_name FROM information_schema.columns "
           "WHERE column_name = 'prompt_file' ORDER BY 1, 2")


def partition_rows(warehouse: Warehouse, key: str, delete: bool = False) -> dict[str, int]:
    """Rows of partition ``key`` per table (``schema.table``) in every table with a ``prompt_file``
    column; with ``delete``, those rows are deleted (one transaction, re-run on a DuckLake conflict)."""
    validate_partition_key(key)
    out: dict[str, int] = {}
    try:
        with warehouse.connect(read_only=not delete) as con:
            tables = [f'"{s}"."{t}"' for s, t in con.execute(_TABLES).fetchall()]
            for name in tables:
                out[name.replace('"', "")] = scalar(con, f"SELECT count(*) FROM {name} WHERE prompt_file = ?", [key])
            if delete and any(out.values()):
                def work(c):
                    for name in tables:
                        c.execute(f"DELETE FROM {name} WHERE prompt_file = ?", [key])
                warehouse.in_transaction(con, work, f"forget {key}")
    except FileNotFoundError:
        return {}
    return out


def files_of(paths: Paths, key: str) -> list[Path]:
    """Every file that belongs to partition ``key`` and exists: its prompt file, PR-record cache,
    summary, turn detail, export manifest, SFT shards and per-turn export documents (names derived
    from the exact key: never another key's)."""
    validate_partition_key(key)
    pf = partition_files(paths, key)
    cache = paths.pr_records_cache(key)
    out = [paths.prompt_file(key), cache, cache.with_suffix(".json"), pf.summary, pf.turns, pf.manifest,
           pf.parquet, pf.jsonl, pf.curation, pf.trajectory_turns]
    for b in BUCKETS:
        d = pf.bucket_dir(b)
        if d.is_dir():
            out += sorted(f for f in d.iterdir() if f.is_file())
    return [p for p in out if p.is_file()]


def remove_files(paths: Paths, key: str) -> list[Path]:
    """Delete the partition's files (prompt file first, so no sensor registers it again), its empty
    export folders, and its entries in the history and near-duplicate indexes (under the history index's
    lock); returns the files."""
    files = files_of(paths, key)
    for f in files:
        f.unlink(missing_ok=True)
    pf = partition_files(paths, key)
    for b in BUCKETS:
        d = pf.bucket_dir(b)
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    index = HistoryIndex(paths.home)
    with index.locked():  # both indexes at once, as sampling reads and writes them
        index.forget(key)
        NearDupIndex(paths.home).release(key)
    return files
