"""The `warehouse` resource: the one handle on the tables (see duel_assets.lib.warehouse)."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import dagster as dg
from pydantic import Field

from duel_assets.lib.system.locks import DEFAULT_LOCK_TIMEOUT_S
from duel_assets.lib.warehouse import Target, Warehouse, parse_target, target_from_env


@lru_cache(maxsize=8)
def _warehouse(target: Target, lock_timeout_s: float) -> Warehouse:
    """One Warehouse per target in a process: the IO manager and the steps share its attached DuckLake."""
    return Warehouse(target, lock_timeout_s=lock_timeout_s)


def configured_lock_timeout() -> float:
    """``warehouse.lock_timeout_s`` from chain.toml, 600 s when the key is absent. A chain.toml that does
    not parse is reported by the steps that read it (with the key at fault), not by the IO manager."""
    from duel_assets.lib.settings import ConfigError, load_config

    try:
        section = getattr(load_config(), "warehouse", None)
    except ConfigError:
        return DEFAULT_LOCK_TIMEOUT_S
    value = getattr(section, "lock_timeout_s", None)
    return float(value) if value is not None else DEFAULT_LOCK_TIMEOUT_S


class WarehouseResource(dg.ConfigurableResource):
    """Where the tables live: $DUEL_WAREHOUSE (a DuckDB file, `ducklake:postgres:<conninfo>` with
    $DUEL_LAKE_DATA_PATH, or `md:<db>`), else $DUEL_HOME/warehouse.duckdb. Read when a step runs,
    so a conninfo's password never becomes run config."""

    target: Optional[str] = Field(default=None, description="Overrides $DUEL_WAREHOUSE")
    lake_data_path: Optional[str] = Field(default=None, description="Overrides $DUEL_LAKE_DATA_PATH")
    lock_timeout_s: Optional[float] = Field(
        default=None, description="Longest wait for a local warehouse file's lock; default chain.toml "
                                  "warehouse.lock_timeout_s (600)")

    def get(self) -> Warehouse:
        from duel_assets.lib.settings import env as settings_env

        timeout = self.lock_timeout_s if self.lock_timeout_s is not None else configured_lock_timeout()
        if self.target:
            target = parse_target(self.target, self.lake_data_path or settings_env.getenv("DUEL_LAKE_DATA_PATH"))
        else:
            env = dict(settings_env.variables())
            if self.lake_data_path:
                env["DUEL_LAKE_DATA_PATH"] = self.lake_data_path
            target = target_from_env(environ=env)
        return _warehouse(target, float(timeout))
