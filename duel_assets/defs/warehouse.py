"""The `warehouse` resource: the one handle on the tables (see duel_assets.lib.warehouse)."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import dagster as dg
from pydantic import Field

from duel_assets.defs.settings import DuelSettings
from duel_assets.lib.settings import ConfigError
from duel_assets.lib.system.locks import DEFAULT_LOCK_TIMEOUT_S
from duel_assets.lib.warehouse import Target, Warehouse, parse_target, target_from_env


@lru_cache(maxsize=8)
def _warehouse(target: Target, lock_timeout_s: float) -> Warehouse:
    """One Warehouse per target in a process: the IO manager and the steps share its attached DuckLake."""
    return Warehouse(target, lock_timeout_s=lock_timeout_s)


class WarehouseResource(dg.ConfigurableResource):
    """Where the tables live: $DUEL_WAREHOUSE (a DuckDB file, `ducklake:postgres:<conninfo>` with
    $DUEL_LAKE_DATA_PATH, or `md:<db>`), else $DUEL_HOME/warehouse.duckdb. Read when a step runs,
    so a conninfo's password never becomes run config."""

    settings: DuelSettings
    target: Optional[str] = Field(default=None, description="Overrides $DUEL_WAREHOUSE")
    lake_data_path: Optional[str] = Field(default=None, description="Overrides $DUEL_LAKE_DATA_PATH")
    lock_timeout_s: Optional[float] = Field(
        default=None, description="Longest wait for a local warehouse file's lock; default chain.toml "
                                  "warehouse.lock_timeout_s (600)")

    def __init__(self, settings: Optional[DuelSettings] = None, **kwargs):
        # as LLMResource: a nested resource cannot have a default_factory
        super().__init__(settings=settings if settings is not None else DuelSettings.from_environment(), **kwargs)  # type: ignore[call-arg]

    def lock_wait_s(self) -> float:
        """``warehouse.lock_timeout_s`` of the settings' chain.toml; the default when the file does not
        validate (the steps that read it report it, with the key at fault; the IO manager does not)."""
        if self.lock_timeout_s is not None:
            return float(self.lock_timeout_s)
        try:
            return float(self.settings.config().warehouse.lock_timeout_s)
        except ConfigError:
            return DEFAULT_LOCK_TIMEOUT_S

    def get(self) -> Warehouse:
        from duel_assets.lib.settings import env as settings_env

        timeout = self.lock_wait_s()
        if self.target:
            target = parse_target(self.target, self.lake_data_path or settings_env.getenv("DUEL_LAKE_DATA_PATH"))
        else:
            env = dict(settings_env.variables())
            if self.lake_data_path:
                env["DUEL_LAKE_DATA_PATH"] = self.lake_data_path
            target = target_from_env(environ=env)
        return _warehouse(target, float(timeout))
