"""The PR records of some instances, with the fields decontamination needs. No Dagster imports.

The same sources as the ``pr_records`` asset (``[[pr_records]]`` in order, else the bundled
records), read the same way (DuckDB, the id filter pushed into the scan), but with the record's
creation time as well: ``repo``, ``base_commit``, ``created_at``, the patch and the problem statement,
whichever of them a source has.
"""
from __future__ import annotations

import duckdb

from ..pr_records import _scan_sql, pr_query
from ..settings import ConfigError, PRRecordSpec, env
from ..sources import BUNDLED_PR_RECORDS

FIELDS = ("repo", "base_commit", "created_at", "patch", "target_patch", "problem_statement")


def _query(path: str, ids: list[str]) -> dict[str, dict]:
    scan, remote = _scan_sql(path)
    con = duckdb.connect(":memory:")
    try:
        if remote:
            con.execute("INSTALL httpfs; LOAD httpfs;")
            token = env.hf_token()
            if token:
                con.execute("CREATE SECRET hf_token (TYPE huggingface, TOKEN ?)", [token])
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        present = [c for c in FIELDS if c in cols]
        if "instance_id" not in cols:
            raise ConfigError(f"PR records at {path!r} have no instance_id column")
        select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in present) or "NULL AS none"
        rows = con.execute(pr_query(scan, select, ids)).fetchall()
    except duckdb.Error as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ConfigError(f"PR records at {path!r} cannot be read: {first}") from None
    finally:
        con.close()
    by_lower = {i.lower(): i for i in ids}
    out: dict[str, dict] = {}
    for r in rows:
        key = by_lower.get(str(r[0]).lower())
        if key and key not in out:
            rec = {c: v for c, v in zip(present, r[1:]) if v is not None}
            rec.setdefault("patch", rec.pop("target_patch", None))
            out[key] = rec
    return out


def lookup_records(specs: list[PRRecordSpec] | None, ids: list[str]) -> dict[str, dict]:
    """instance id -> its record's fields, from the first source that has the id."""
    out: dict[str, dict] = {}
    for spec in specs or [PRRecordSpec(path=BUNDLED_PR_RECORDS)]:
        rest = [i for i in ids if i not in out]
        if not rest:
            break
        out.update(_query(spec.path, rest))
    return out
