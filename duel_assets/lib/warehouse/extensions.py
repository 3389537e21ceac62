"""DuckDB extensions from pip wheels, never from the network.

DuckDB fetches extensions (ducklake, postgres, httpfs) from its own host at run time, which a
locked-down worker cannot reach. The wheels ``duckdb-extension-<name>`` (pinned in setup.py to the
DuckDB version they are built for) carry the extension files: each is installed once from its
wheel into a private extension directory (``$DUEL_DUCKDB_EXTENSION_DIR``, default
``~/.cache/duel_assets/duckdb_extensions``), then loaded by name with automatic installation off.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from ..system.locks import file_lock
from .target import WarehouseError

EXTENSIONS = ("ducklake", "postgres", "httpfs")


def extension_dir() -> Path:
    from ..settings import env

    explicit = env.getenv("DUEL_DUCKDB_EXTENSION_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = env.getenv("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "duel_assets" / "duckdb_extensions"


def connection_config() -> dict:
    """Config for a DuckDB connection that may load extensions only from the private directory."""
    return {"extension_directory": str(extension_dir()), "autoinstall_known_extensions": False,
            "autoload_known_extensions": True}


def wheel_file(name: str) -> Path:
    """The extension file shipped by the ``duckdb-extension-<name>`` wheel for this DuckDB."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(f"the DuckDB extension {name!r} is not installed: pip install "
                             f"duckdb-extension-{name}=={duckdb.__version__} (setup.py pins it)")
    root = Path(list(spec.submodule_search_locations)[0]) / "extensions"
    f = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not f.exists():
        have = sorted(p.name for p in root.glob("v*")) if root.exists() else []
        raise WarehouseError(f"duckdb-extension-{name} carries DuckDB {', '.join(have) or 'no'} builds but DuckDB "
                             f"{duckdb.__version__} is installed: reinstall with `make install` (constraints.txt)")
    return f


def _installed(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = ? OR list_contains(aliases, ?)",
                      [name, name]).fetchone()
    return bool(row and row[0])


def load_extensions(con: duckdb.DuckDBPyConnection, names: tuple[str, ...]) -> None:
    """Install (once, from the wheels) and load ``names`` on a connection made with
    :func:`connection_config`."""
    missing = [n for n in names if not _installed(con, n)]
    if missing:
        d = extension_dir()
        d.mkdir(parents=True, exist_ok=True)
        with file_lock(d / ".install.lock", timeout_s=120, what="DuckDB extension install"):
            for n in missing:
                if not _installed(con, n):
                    con.execute(f"INSTALL '{wheel_file(n)}'")
    for n in names:
        con.execute(f"LOAD {n}")
