"""What ``DUEL_WAREHOUSE`` names, and how to show it without its secrets.

* unset, or a path: a local DuckDB file (default ``$DUEL_HOME/warehouse.duckdb``), one writer at a
  time behind an inter-process file lock;
* ``ducklake:postgres:<libpq conninfo>``: a DuckLake whose catalog is in PostgreSQL and whose data
  files are under ``DUEL_LAKE_DATA_PATH`` (a folder every worker reaches, or ``s3://...``); many
  processes on many machines write at once;
* ``ducklake:<path>.ducklake``: a DuckLake whose catalog is a local DuckDB file (one machine; its
  catalog file is locked like a local warehouse);
* ``md:<db>`` / ``motherduck:<db>``: MotherDuck (untested here: its extension needs the network).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


class WarehouseError(RuntimeError):
    """The warehouse cannot be used as configured; the message says what to change."""


LOCAL, DUCKLAKE, MOTHERDUCK = "local", "ducklake", "motherduck"

_SECRET_KV = re.compile(r"(?i)\b(password|passwd|motherduck_token|token|secret)\s*=\s*('[^']*'|\S+)")
_URI_USERINFO = re.compile(r"(?i)(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]+):[^@\s]*@")


def redact(text: str) -> str:
    """``text`` with passwords and tokens (conninfo ``key=value`` pairs, URI user info) masked."""
    return _URI_USERINFO.sub(r"\1:***@", _SECRET_KV.sub(lambda m: f"{m.group(1)}=***", str(text)))


@dataclass(frozen=True)
class Target:
    dialect: str  # local | ducklake | motherduck
    location: str  # the file path, the md: name, or the DuckLake catalog ("postgres:<conninfo>" or a path)
    data_path: str | None = None  # DuckLake data files

    @property
    def catalog_is_postgres(self) -> bool:
        return self.dialect == DUCKLAKE and self.location.startswith("postgres:")

    @property
    def lock_file(self) -> str | None:
        """The local DuckDB file whose writers must queue (None: the store serves concurrent writers)."""
        if self.dialect == LOCAL:
            return self.location
        if self.dialect == DUCKLAKE and not self.catalog_is_postgres:
            return self.location
        return None

    @property
    def label(self) -> str:
        """How the warehouse is shown in metadata and messages: never a password or token."""
        if self.dialect == LOCAL:
            return self.location
        if self.dialect == DUCKLAKE:
            return redact(f"ducklake:{self.location}")
        return redact(self.location)

    @property
    def remote_data(self) -> bool:
        return bool(self.data_path and "://" in self.data_path)


def parse_target(value: str | os.PathLike, data_path: str | None = None) -> Target:
    """A :class:`Target` from a ``DUEL_WAREHOUSE`` value (and ``DUEL_LAKE_DATA_PATH``)."""
    text = str(value).strip()
    if not text:
        raise WarehouseError("DUEL_WAREHOUSE is empty: unset it (local warehouse.duckdb) or name a warehouse")
    if text.startswith(("md:", "motherduck:")):
        return Target(MOTHERDUCK, text)
    if text.startswith("ducklake:"):
        catalog = text[len("ducklake:"):].strip()
        if catalog.startswith("postgres:"):
            if not catalog[len("postgres:"):].strip():
                raise WarehouseError("DUEL_WAREHOUSE=ducklake:postgres: needs a libpq conninfo after it, "
                                     "e.g. ducklake:postgres:dbname=duel host=db.internal user=duel")
            if not data_path:
                raise WarehouseError("DUEL_WAREHOUSE is a DuckLake in PostgreSQL but DUEL_LAKE_DATA_PATH is not set: "
                                     "set it to a folder every worker reaches, or s3://bucket/prefix/")
            return Target(DUCKLAKE, catalog, _folder(data_path))
        if not catalog or catalog.startswith(("sqlite:", "mysql:")):
            raise WarehouseError(f"DUEL_WAREHOUSE={redact(text)}: the DuckLake catalog must be postgres:<conninfo> "
                                 "or a local .ducklake file")
        path = str(Path(catalog).expanduser().resolve())
        return Target(DUCKLAKE, path, _folder(data_path or path + ".files"))
    return Target(LOCAL, str(Path(text).expanduser().resolve()))


def _folder(path: str) -> str:
    """A data path as DuckLake wants it: absolute, ending with a separator."""
    if "://" not in path:
        path = str(Path(path).expanduser().resolve())
    return path if path.endswith("/") else path + "/"


def target_from_env(home: Path | None = None, environ: dict | None = None) -> Target:
    """``$DUEL_WAREHOUSE`` (with ``$DUEL_LAKE_DATA_PATH``), else ``<home>/warehouse.duckdb``."""
    from ..settings import env as settings_env

    env = settings_env.variables() if environ is None else environ
    if home is None:
        from ..settings import duel_home

        home = duel_home()
    return parse_target(env.get("DUEL_WAREHOUSE") or Path(home) / "warehouse.duckdb", env.get("DUEL_LAKE_DATA_PATH"))
