"""PR records (SWE-rebench-V2 / V2-PRs format) read with DuckDB. No Dagster imports.

Only the partition's instance ids are read: DuckDB pushes the projection and the ``IN`` filter
down into parquet scans, so a 2.7 GB hub dump is not loaded whole.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb
import pandas as pd

from .files import replacing, write_json_atomic
from .settings import ConfigError
from .sources import BUNDLED_PR_RECORDS, resolve_local

PR_COLUMNS = ["instance_id", "repo", "base_commit", "problem_statement", "pr_description", "patch",
              "changed_files", "missing"]
_TEXT_COLUMNS = ["repo", "base_commit", "problem_statement", "pr_description", "patch"]
_DIFF_RE = re.compile(r"^diff --git a/(.+?) b/(.+?)$", re.MULTILINE)
_PLUSPLUS_RE = re.compile(r"^\+\+\+ b/(.+)$", re.MULTILINE)


def changed_files_from_patch(patch: str | None) -> list[str]:
    if not patch:
        return []
    files = [b for _, b in _DIFF_RE.findall(patch)] or _PLUSPLUS_RE.findall(patch)
    return list(dict.fromkeys(f.strip() for f in files))


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _scan_sql(path: str) -> tuple[str, bool]:
    """(FROM clause, needs httpfs) for a local file/dir/glob, an hf:// URL or a hub dataset name."""
    files = resolve_local(path)
    if files is None:
        url = path if path.startswith("hf://") else f"hf://datasets/{path}/**/*.parquet"
        remote = True
        targets = [url]
    else:
        if not files:
            raise ConfigError(f"pr_records.path {path!r} matched no files")
        remote = False
        targets = [str(f) for f in files]
    lst = "[" + ", ".join(_sql_str(t) for t in targets) + "]"
    if all(t.endswith(".parquet") for t in targets):
        return f"read_parquet({lst}, union_by_name=true)", remote
    return f"read_json_auto({lst}, format='auto', union_by_name=true, maximum_object_size=268435456)", remote


def pr_query(scan: str, select: str, ids: list[str]) -> str:
    """A plain ``column IN (...)`` filter (each id as given and lower-cased, since V2 lower-cases
    them) so that DuckDB pushes it into the parquet scan and skips row groups by their statistics."""
    variants = sorted({v for i in ids for v in (i, i.lower())})
    id_list = ", ".join(_sql_str(v) for v in variants)
    return f"SELECT CAST(instance_id AS VARCHAR) AS instance_id, {select} FROM {scan} WHERE instance_id IN ({id_list})"


def read_pr_records(path: str | None, instance_ids: list[str]) -> pd.DataFrame:
    """One row per requested id; ids without a record come back with ``missing=True``."""
    ids = list(dict.fromkeys(i for i in instance_ids if i))
    source = path or BUNDLED_PR_RECORDS
    found: dict[str, dict] = {}
    if ids:
        scan, remote = _scan_sql(source)
        con = duckdb.connect(":memory:")
        try:
            if remote:
                con.execute("INSTALL httpfs; LOAD httpfs;")
                if os.environ.get("HF_TOKEN"):
                    con.execute("CREATE SECRET hf_token (TYPE huggingface, TOKEN ?)", [os.environ["HF_TOKEN"]])
            cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
            if "instance_id" not in cols:
                raise ConfigError(f"PR records at {source!r} have no instance_id column")
            select = ", ".join(
                [f'CAST("{c}" AS VARCHAR) AS "{c}"' if c in cols else f'NULL AS "{c}"' for c in _TEXT_COLUMNS]
            )
            rows = con.execute(pr_query(scan, select, ids)).fetchall()
        finally:
            con.close()
        names = ["instance_id", *_TEXT_COLUMNS]
        by_lower = {i.lower(): i for i in ids}
        for r in rows:
            rec = dict(zip(names, r))
            key = by_lower.get(rec["instance_id"].lower())
            if key and key not in found:
                found[key] = rec
    out = []
    for i in ids:
        rec = found.get(i)
        if rec is None:
            out.append({"instance_id": i, "repo": None, "base_commit": None, "problem_statement": None,
                        "pr_description": None, "patch": None, "changed_files": "[]", "missing": True})
        else:
            out.append({**rec, "instance_id": i, "changed_files": json.dumps(changed_files_from_patch(rec["patch"])),
                        "missing": False})
    return pd.DataFrame(out, columns=PR_COLUMNS)


def _fingerprint(path: str | None, ids: list[str]) -> dict:
    source = path or BUNDLED_PR_RECORDS
    files = resolve_local(source)
    stat = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files] if files else None
    return {"source": source, "files": stat, "ids": sorted(set(ids))}


def cached_pr_records(path: str | None, instance_ids: list[str], cache_file: Path) -> tuple[pd.DataFrame, bool]:
    """:func:`read_pr_records`, kept per partition in ``cache_file`` (parquet) and reused while the
    source files and the requested ids are unchanged. Returns (records, cache hit)."""
    fp = _fingerprint(path, instance_ids)
    meta = cache_file.with_suffix(".json")
    if cache_file.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == fp:
                return pd.read_parquet(cache_file)[PR_COLUMNS], True
        except (json.JSONDecodeError, OSError, ValueError):
            pass
    df = read_pr_records(path, instance_ids)
    with replacing(cache_file) as tmp:
        df.to_parquet(tmp, index=False)
    write_json_atomic(meta, fp)
    return df, False
