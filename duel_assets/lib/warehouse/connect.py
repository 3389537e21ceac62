"""Opening DuckDB on each kind of warehouse.

A local file is opened directly (a file written by a newer DuckDB gets a one-line error saying
what to do). A DuckLake is attached to an in-memory DuckDB with the extensions installed from the
pinned wheels, its data files on a shared folder or on S3 (httpfs, credentials from the usual AWS
variables); the first ATTACH of an empty catalog creates its tables, and processes racing on it
retry.
"""
from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from .extensions import connection_config, load_extensions
from .target import Target, WarehouseError, redact

LAKE_ALIAS = "duel_lake"
NEWER_FILE = re.compile(r"database file with version number (\d+)")


def sql_str(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | None = None) -> Any:
    """The single value of a query that always returns one row (an aggregate, a scalar expression)."""
    row = (con.execute(sql) if params is None else con.execute(sql, params)).fetchone()
    if row is None:
        raise WarehouseError(f"no row from {sql[:80]!r}")
    return row[0]


def open_local(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(8):
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as e:
            newer = NEWER_FILE.search(str(e))
            if newer:
                raise WarehouseError(
                    f"{path} was written by a newer DuckDB (storage version {newer.group(1)}) than the DuckDB "
                    f"{duckdb.__version__} installed here: move it as docs/operations.md 'Moving an existing warehouse' says "
                    "(EXPORT DATABASE with DuckDB 2, IMPORT DATABASE here), or move it aside and re-run "
                    "(cached calls cost nothing)") from None
            if "lock" not in str(e).lower() or attempt == 7:
                raise
            time.sleep(0.1 * 2 ** attempt)  # another program (not one of ours) has the file open
    raise AssertionError("unreachable")


def open_lake(t: Target) -> duckdb.DuckDBPyConnection:
    if t.data_path is None:
        raise WarehouseError(f"{t.label}: a DuckLake target needs a data path (DUEL_LAKE_DATA_PATH)")
    data_path = t.data_path
    con = duckdb.connect(":memory:", config=connection_config())
    try:
        names = ("ducklake",) + (("postgres",) if t.catalog_is_postgres else ()) + (("httpfs",) if t.remote_data else ())
        load_extensions(con, names)
        if t.remote_data and data_path.startswith(("s3://", "s3a://")):
            _s3_secret(con)
        attach = (f"ATTACH {sql_str('ducklake:' + t.location)} AS {LAKE_ALIAS} "
                  f"(DATA_PATH {sql_str(data_path)})")
        for attempt in range(10):
            try:
                con.execute(attach)
                break
            except duckdb.Error as e:
                # the first ATTACH of an empty catalog creates its tables: two processes race on it
                if "Failed to initialize DuckLake" not in str(e) or attempt == 9:
                    raise WarehouseError(f"cannot attach DuckLake {t.label}: {redact(str(e)).splitlines()[0]}") from None
                time.sleep(random.uniform(0.05, 0.3))
        con.execute(f"USE {LAKE_ALIAS}")
        return con
    except BaseException:
        con.close()
        raise


def _s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """An S3 secret from the usual AWS variables (httpfs); nothing is printed or stored."""
    from ..settings import env as settings_env

    env = settings_env.variables()
    parts = ["TYPE s3"]
    for key, var in (("KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET", "AWS_SECRET_ACCESS_KEY"),
                     ("SESSION_TOKEN", "AWS_SESSION_TOKEN")):
        if env.get(var):
            parts.append(f"{key} {sql_str(env[var])}")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        parts.append(f"REGION {sql_str(region)}")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        parts += [f"ENDPOINT {sql_str(host or scheme)}", f"USE_SSL {'false' if scheme == 'http' else 'true'}",
                  "URL_STYLE 'path'"]
    con.execute(f"CREATE OR REPLACE SECRET duel_s3 ({', '.join(parts)})")
