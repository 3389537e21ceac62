"""The hidden record of every instance: from the trajectory row itself, else from PR-record
sources read with DuckDB.

Resolution order per instance: the hidden information its turns carry from their own rows (raw
SERA ``target_patch`` + ``problem_statement``, any row with a ``patch``): ``record_source = "row"``;
then each ``[[pr_records]]`` source in order (SWE-rebench-V2(-PRs), SWE-smith task instances,
SWE-bench-style ``instance_id`` / ``patch`` / ``problem_statement``): ``record_source`` = its path;
else ``missing``. Only the partition's ids are read: DuckDB pushes the projection and the ``IN``
filter down into parquet scans, so a 2.7 GB hub dump is not loaded whole. A local JSON / JSON
Lines file is checked first (a regular file, within :data:`MAX_JSON_BYTES`, JSON that DuckDB can
read); a file DuckDB cannot read fails with one line naming it.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import duckdb
import pandas as pd

from ..settings import ConfigError, PRRecordsConfig, PRRecordSpec, env
from ..system.bounded import InputRefused, check_json_file
from ..system.files import replacing, write_json_atomic
from .sources import BUNDLED_PR_RECORDS, local_stamp, resolve_local

PR_COLUMNS = ["instance_id", "repo", "base_commit", "problem_statement", "pr_description", "patch",
              "changed_files", "missing", "record_source"]
_TEXT_COLUMNS = ["repo", "base_commit", "problem_statement", "pr_description", "patch"]
# per format: where each field comes from (first column present wins), and the columns it must have
_COLUMNS = {"auto": {"patch": ["patch", "target_patch"]}, "sera": {"patch": ["target_patch"], "repo": []}}
_REQUIRED = {"auto": ["instance_id"], "swe_rebench": ["instance_id", "repo", "base_commit", "problem_statement", "patch"],
             "swe_smith": ["instance_id", "patch"], "swe_bench": ["instance_id", "repo", "base_commit", "problem_statement", "patch"],
             "sera": ["instance_id", "target_patch"]}
MAX_JSON_BYTES = 4 * 1024**3  # a local JSON / JSON Lines file of PR records (parquet is read by row group)
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
        url = path if "://" in path else f"hf://datasets/{path}/**/*.parquet"
        remote = True
        targets = [url]
    else:
        if not files:
            raise ConfigError(f"pr_records.path {path!r} matched no files")
        remote = False
        targets = [str(f) for f in files]
        for f in files:
            if not f.name.endswith(".parquet"):
                _check_json(str(f), f.stat().st_size, f.stat().st_mtime_ns)
    lst = "[" + ", ".join(_sql_str(t) for t in targets) + "]"
    if all(t.endswith(".parquet") for t in targets):
        return f"read_parquet({lst}, union_by_name=true)", remote
    return f"read_json_auto({lst}, format='auto', union_by_name=true, maximum_object_size=268435456)", remote


@lru_cache(maxsize=256)
def _check_json(path: str, size: int, mtime_ns: int) -> None:
    """A local JSON / JSON Lines file of PR records is JSON DuckDB can read (checked once per version
    of the file): deep nesting would crash its schema detection, a lone surrogate fail it unnamed."""
    try:
        check_json_file(path, "PR records file", MAX_JSON_BYTES)
    except InputRefused as e:
        raise ConfigError(str(e)) from None


def pr_query(scan: str, select: str, ids: list[str]) -> str:
    """A plain ``column IN (...)`` filter (each id as given and lower-cased, since V2 lower-cases
    them) so that DuckDB pushes it into the parquet scan and skips row groups by their statistics."""
    variants = sorted({v for i in ids for v in (i, i.lower())})
    id_list = ", ".join(_sql_str(v) for v in variants)
    return f"SELECT CAST(instance_id AS VARCHAR) AS instance_id, {select} FROM {scan} WHERE instance_id IN ({id_list})"


def _select(cols: set[str], fmt: str, source: str) -> str:
    missing = [c for c in _REQUIRED[fmt] if c not in cols]
    if fmt == "auto" and not missing and not ({"patch", "target_patch"} & cols):
        missing = ["patch"]
    if missing:
        raise ConfigError(f"PR records at {source!r} (format {fmt!r}) have no {', '.join(missing)} column")
    parts = []
    for c in _TEXT_COLUMNS:
        present = [f'CAST("{s}" AS VARCHAR)' for s in _COLUMNS.get(fmt, {}).get(c, [c]) if s in cols]
        expr = present[0] if len(present) == 1 else f"COALESCE({', '.join(present)})" if present else "NULL"
        parts.append(f'{expr} AS "{c}"')
    return ", ".join(parts)


def scan_columns(con: duckdb.DuckDBPyConnection, scan: str, remote: bool) -> set[str]:
    """The columns of ``scan`` on ``con``, after setting the connection up for the hub when ``remote``."""
    if remote:
        con.execute("INSTALL httpfs; LOAD httpfs;")
        token = env.hf_token()
        if token:
            con.execute("CREATE SECRET hf_token (TYPE huggingface, TOKEN ?)", [token])
    return {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}


def _query_source(source: str, fmt: str, ids: list[str]) -> dict[str, dict]:
    scan, remote = _scan_sql(source)
    con = duckdb.connect(":memory:")
    try:
        cols = scan_columns(con, scan, remote)
        rows = con.execute(pr_query(scan, _select(cols, fmt, source), ids)).fetchall()
    except duckdb.Error as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ConfigError(f"PR records at {source!r} cannot be read: {first}") from None
    finally:
        con.close()
    by_lower = {i.lower(): i for i in ids}
    found: dict[str, dict] = {}
    for r in rows:
        rec = dict(zip(["instance_id", *_TEXT_COLUMNS], r))
        key = by_lower.get(rec["instance_id"].lower())
        if key and key not in found and rec.get("patch"):
            found[key] = rec
    return found


def _record(instance_id: str, rec: dict | None, source: str | None) -> dict:
    if rec is None:
        return {"instance_id": instance_id, **{c: None for c in _TEXT_COLUMNS}, "changed_files": "[]", "missing": True,
                "record_source": None}
    return {**{c: rec.get(c) for c in _TEXT_COLUMNS}, "instance_id": instance_id,
            "changed_files": json.dumps(changed_files_from_patch(rec.get("patch"))), "missing": False, "record_source": source}


def _specs(sources: str | None | PRRecordsConfig | list[PRRecordSpec]) -> list[PRRecordSpec]:
    if isinstance(sources, PRRecordsConfig):
        sources = sources.specs
    if sources is None or sources == "":
        return [PRRecordSpec(path=BUNDLED_PR_RECORDS)]
    if isinstance(sources, str):
        return [PRRecordSpec(path=sources)]
    return list(sources) or [PRRecordSpec(path=BUNDLED_PR_RECORDS)]


def read_pr_records(sources: str | None | PRRecordsConfig | list[PRRecordSpec], instance_ids: list[str],
                    from_rows: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per requested id: the row's own hidden information (``from_rows``), else the first
    source that has a record with a patch, else ``missing=True``. ``sources`` is a path, a list of
    ``[[pr_records]]`` specs, or None / empty for the bundled records."""
    ids = list(dict.fromkeys(i for i in instance_ids if i))
    from_rows = from_rows or {}
    out: dict[str, dict] = {i: _record(i, from_rows[i], "row") for i in ids if from_rows.get(i, {}).get("patch")}
    for spec in _specs(sources):
        rest = [i for i in ids if i not in out]
        if not rest:
            break
        for i, rec in _query_source(spec.path, spec.format, rest).items():
            out[i] = _record(i, rec, spec.path)
    return pd.DataFrame([out.get(i) or _record(i, None, None) for i in ids], columns=PR_COLUMNS)


def _fingerprint(sources, ids: list[str], from_rows: dict) -> dict:
    specs = []
    for spec in _specs(sources):
        specs.append({"path": spec.path, "format": spec.format, "files": local_stamp(spec.path)})
    rows = sorted((i, json.dumps(h, sort_keys=True)) for i, h in from_rows.items())
    return {"sources": specs, "ids": sorted(set(ids)), "rows": rows}


def cached_pr_records(sources, instance_ids: list[str], cache_file: Path,
                      from_rows: dict[str, dict] | None = None) -> tuple[pd.DataFrame, bool]:
    """:func:`read_pr_records`, kept per partition in ``cache_file`` (parquet) and reused while the
    sources, the requested ids and the rows' own records are unchanged. Returns (records, cache hit)."""
    from_rows = from_rows or {}
    fp = _fingerprint(sources, instance_ids, from_rows)
    meta = cache_file.with_suffix(".json")
    if cache_file.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == json.loads(json.dumps(fp)):
                return pd.read_parquet(cache_file)[PR_COLUMNS], True
        except (json.JSONDecodeError, OSError, ValueError, KeyError):
            pass
    df = read_pr_records(sources, instance_ids, from_rows)
    with replacing(cache_file) as tmp:
        df.to_parquet(tmp, index=False)
    write_json_atomic(meta, fp)
    return df, False


def hidden_by_instance(records: list[dict]) -> dict[str, dict]:
    """instance_id -> the first hidden record a turn of it carries (records have ``instance_id``
    and ``hidden``: a dict, a JSON string or null)."""
    out: dict[str, dict] = {}
    for r in records:
        h = r.get("hidden")
        if isinstance(h, str):
            try:
                h = json.loads(h)
            except json.JSONDecodeError:
                h = None
        if isinstance(h, dict) and h.get("patch") and r["instance_id"] not in out:
            out[r["instance_id"]] = h
    return out


def hidden_share(turn_instances, records: pd.DataFrame) -> dict:
    """Per partition: the share of turns with hidden information and where it came from."""
    have = {r["instance_id"]: r["record_source"] for r in records.to_dict("records") if not r["missing"]}
    turns = list(turn_instances)
    with_hidden = [have[i] for i in turns if i in have]
    by_source: dict[str, int] = {}
    for s in with_hidden:
        by_source[s] = by_source.get(s, 0) + 1
    return {"turns": len(turns), "turns_with_hidden_info": len(with_hidden),
            "hidden_info_share": round(len(with_hidden) / len(turns), 4) if turns else 0.0,
            "instances": len(records), "instances_missing": int(records["missing"].sum()) if len(records) else 0,
            "turns_by_record_source": by_source}
