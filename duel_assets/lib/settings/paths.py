"""Where everything lives under $DUEL_HOME, given as values (``Paths.from_env`` reads them once)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import env
from .base import BUCKETS, validate_partition_key


@dataclass(frozen=True)
class Paths:
    home: Path
    warehouse_url: str | None = None  # a DuckDB path or md:<db>; None: warehouse.duckdb in home
    dagster_home_dir: Path | None = None  # None: dagster_home in home
    call_cache_url: str | None = None  # PostgreSQL (URL or conninfo) or a SQLite path; None: cache/llm_calls.sqlite

    @classmethod
    def from_env(cls) -> Paths:
        return cls(env.duel_home(), env.warehouse_url(), env.dagster_home(), env.call_cache_url())

    @property
    def call_cache(self) -> str:
        """Where completed calls, requests in flight and the endpoint's budget are kept."""
        return self.call_cache_url or str(self.cache_db)

    @property
    def warehouse(self) -> Path | str:
        return self.warehouse_url or self.home / "warehouse.duckdb"

    @property
    def prompt_dir(self) -> Path:
        return self.home / "prompt"

    def prompt_file(self, key: str) -> Path:
        return self.prompt_dir / f"{validate_partition_key(key)}.json"

    def bucket_dir(self, bucket: str) -> Path:
        return self.home / bucket

    @property
    def export_dir(self) -> Path:
        return self.home / "export"

    @property
    def report_dir(self) -> Path:
        return self.home / "report"

    @property
    def report(self) -> Path:
        return self.report_dir / "report.md"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def cache_db(self) -> Path:
        return self.cache_dir / "llm_calls.sqlite"

    def pr_records_cache(self, key: str) -> Path:
        return self.cache_dir / "pr_records" / f"{validate_partition_key(key)}.parquet"

    @property
    def dagster_home(self) -> Path:
        return (self.dagster_home_dir or self.home / "dagster_home").resolve()

    def ensure(self) -> Paths:
        """The folders, made when missing: ``$DUEL_HOME`` itself 0700 when this creates it, and
        ``cache/`` (the call store: every reply bought) always 0700."""
        private_dir(self.home, tighten=False)
        private_dir(self.cache_dir)
        for d in (self.prompt_dir, self.report_dir, *(self.bucket_dir(b) for b in BUCKETS)):
            d.mkdir(parents=True, exist_ok=True)
        return self


def private_dir(path: Path, tighten: bool = True) -> Path:
    """``path`` made with mode 0700 when missing; an existing one of this user is set to 0700 when
    ``tighten`` (group and others lose access to what it holds)."""
    import os
    import stat

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)  # the umask only narrows it
    elif tighten:
        st = path.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    return path
