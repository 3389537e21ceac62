"""The PR records of some instances, with the fields decontamination needs.

The same sources as the ``pr_records`` asset (``[[pr_records]]`` in order, else the bundled
records), read the same way (DuckDB, the id filter pushed into the scan), but with the record's
creation time as well: ``repo``, ``base_commit``, ``created_at``, the patch and the problem statement,
whichever of them a source has. A local source's connection and columns are kept for the process
(the lookups of one sampling come per batch of rows), re-opened when its files change; a local source
of at most :data:`WHOLE_BYTES` is read whole once and looked up in memory, with the same answers.
"""
from __future__ import annotations

import threading

import duckdb

from ...settings import ConfigError, PRRecordSpec
from ..pr_records import _scan_sql, pr_query, scan_columns
from ..sources import BUNDLED_PR_RECORDS, local_stamp

FIELDS = ("repo", "base_commit", "created_at", "patch", "target_patch", "problem_statement")
_OPEN: dict[str, tuple[tuple, duckdb.DuckDBPyConnection, str, list[str]]] = {}  # local path -> (stamp, con, scan, columns)
_WHOLE: dict[str, tuple[tuple, list[str], dict]] = {}  # small local path -> (stamp, fields, id -> (row, values))
_LOCK = threading.RLock()
WHOLE_BYTES = 16 << 20  # a local source this small is read whole once, then looked up in memory


def _open(path: str, scan: str, remote: bool) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    con = duckdb.connect(":memory:")
    try:
        cols = scan_columns(con, scan, remote)
        if "instance_id" not in cols:
            raise ConfigError(f"PR records at {path!r} have no instance_id column")
    except BaseException:
        con.close()
        raise
    return con, [c for c in FIELDS if c in cols]


def _whole(path: str, stamp: tuple, ids: list[str]) -> tuple[list[tuple], list[str]]:
    """The rows :func:`_rows` gives for ``ids``, from a small local source read whole once (kept while
    its files are unchanged): of each id as given and lower-cased, its first row, in the file's order."""
    with _LOCK:
        kept = _WHOLE.get(path)
        if kept is None or kept[0] != stamp:
            rows, present = _rows(path, stamp, None)
            first: dict[str, tuple[int, tuple]] = {}
            for pos, r in enumerate(rows):
                if r[0] is not None:
                    first.setdefault(str(r[0]), (pos, r))
            _WHOLE.pop(path, None)
            while len(_WHOLE) >= 8:
                _WHOLE.pop(next(iter(_WHOLE)))
            kept = _WHOLE[path] = (stamp, present, first)
    _, present, first = kept
    hits = sorted(first[v] for v in {v for i in ids for v in (i, i.lower())} if v in first)
    return [r for _, r in hits], present


def _query(path: str, ids: list[str]) -> dict[str, dict]:
    stamp = local_stamp(path)
    small = stamp is not None and sum(size for _, size, _ in stamp) <= WHOLE_BYTES
    rows, present = _whole(path, stamp, ids) if stamp is not None and small else _rows(path, stamp, ids)
    by_lower = {i.lower(): i for i in ids}
    out: dict[str, dict] = {}
    for r in rows:
        key = by_lower.get(str(r[0]).lower())
        if key and key not in out:
            rec = {c: v for c, v in zip(present, r[1:]) if v is not None}
            rec.setdefault("patch", rec.pop("target_patch", None))
            out[key] = rec
    return out


def _rows(path: str, stamp: tuple | None, ids: list[str] | None) -> tuple[list[tuple], list[str]]:
    """The rows (instance id, then the fields present) of ``ids`` (every row when None), and the fields
    present; ``stamp``: :func:`local_stamp` of ``path``."""
    with _LOCK:
        try:
            kept = _OPEN.pop(path, None)
            if kept is not None and (stamp is None or kept[0] != stamp):
                kept[1].close()
                kept = None
            if kept is None:
                scan, remote = _scan_sql(path)
                con, present = _open(path, scan, remote)
            else:
                con, scan, present = kept[1], kept[2], kept[3]
            try:
                select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in present) or "NULL AS none"
                sql = (pr_query(scan, select, ids) if ids is not None
                       else f"SELECT CAST(instance_id AS VARCHAR) AS instance_id, {select} FROM {scan}")
                rows = con.execute(sql).fetchall()
            finally:
                if stamp is None:
                    con.close()
                else:
                    while len(_OPEN) >= 8:
                        _OPEN.pop(next(iter(_OPEN)))[1].close()
                    _OPEN[path] = (stamp, con, scan, present)
        except duckdb.Error as e:
            first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ConfigError(f"PR records at {path!r} cannot be read: {first}") from None
    return rows, present


def lookup_records(specs: list[PRRecordSpec] | None, ids: list[str]) -> dict[str, dict]:
    """instance id -> its record's fields, from the first source that has the id."""
    out: dict[str, dict] = {}
    for spec in specs or [PRRecordSpec(path=BUNDLED_PR_RECORDS)]:
        rest = [i for i in ids if i not in out]
        if not rest:
            break
        out.update(_query(spec.path, rest))
    return out
