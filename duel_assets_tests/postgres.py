"""A throw-away PostgreSQL cluster for tests: Debian's server binaries, 127.0.0.1, a free port.

Any test module can use it: the session fixture ``postgres`` (registered by conftest.py) starts one
cluster for the whole session and stops it at the end, also when a test fails; ``pg.database(name)``
creates a database and returns its :class:`PgDatabase` (libpq conninfo, SQLAlchemy URL, Dagster's
``postgres_db`` fields). ``PostgresCluster`` also works as a context manager outside pytest.

initdb refuses to run as root, so as root the server runs as the ``postgres`` user (created by
Debian's package) through ``runuser``. `make test-scale` installs the package when it is missing.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from duel_assets.devtools.ports import free_port


def pg_bin_dir() -> Path | None:
    """The newest server binaries Debian installed (/usr/lib/postgresql/<v>/bin), else those on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass(frozen=True)
class PgDatabase:
    host: str
    port: int
    user: str
    name: str

    @property
    def conninfo(self) -> str:
        """libpq conninfo, as DUEL_WAREHOUSE=ducklake:postgres:<conninfo> takes it."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.name}"

    def url(self, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.name}"

    def dagster_env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads for its storage."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
                "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": self.name}


class PostgresCluster:
    """initdb + pg_ctl start in a temporary folder; :meth:`stop` stops the server and removes it."""

    def __init__(self, root: Path | None = None):
        self.bin = pg_bin_dir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found: `make test-scale` installs Debian's "
                               "postgresql package (apt-get install -y postgresql)")
        self.root = Path(root or tempfile.mkdtemp(prefix="duel-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.started = False
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, *args], check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> PostgresCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-instructions")
        for attempt in range(5):  # the port may be taken between free_port() and the server's bind
            self.port = free_port()
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"),
                          "-w", "-t", "60", "start")
                self.started = True
                return self
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
        return self

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            except subprocess.SubprocessError:
                pass
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self, name: str) -> PgDatabase:
        """Create database ``name`` (if absent) and return how to reach it."""
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return PgDatabase("127.0.0.1", self.port, "postgres", name)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL for the session, stopped at the end whatever happened."""
    t0 = time.monotonic()
    cluster = PostgresCluster()
    try:
        cluster.start()
        print(f"\nPostgreSQL {cluster.bin.parts[-2]} on 127.0.0.1:{cluster.port} ({time.monotonic() - t0:.1f} s)")
        yield cluster
    finally:
        cluster.stop()
