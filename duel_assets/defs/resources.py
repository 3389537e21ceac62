"""Resources: settings (paths + chain.toml), the LLM endpoint, the warehouse and its IO manager."""

from typing import Callable, Optional

import dagster as dg
from pydantic import Field

from duel_assets.defs.io_manager import DuelDuckDBIOManager
from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib.call_cache import CallCache
from duel_assets.lib.llm import LLMCaller, require_endpoint
from duel_assets.lib.settings import ChainConfig, Endpoint, Paths, duel_home, duel_mode, load_config, resolve_endpoint


class DuelSettings(dg.ConfigurableResource):
    """Where the pipeline writes ($DUEL_HOME) and what it does (chain.toml at $DUEL_CONFIG)."""

    duel_home: Optional[str] = Field(default=None, description="Overrides $DUEL_HOME")
    config_path: Optional[str] = Field(default=None, description="Overrides $DUEL_CONFIG")

    def paths(self) -> Paths:
        from pathlib import Path

        return Paths(Path(self.duel_home).resolve() if self.duel_home else duel_home()).ensure()

    def config(self) -> ChainConfig:
        return load_config(self.config_path)

    def mode(self) -> int:
        return duel_mode()


class LLMResource(dg.ConfigurableResource):
    """An OpenAI-compatible endpoint. The key is read from the environment when a step runs
    (LLM_API_KEY, then CHUTES_API_KEY, then OPENAI_API_KEY) and is never part of run config."""

    base_url: Optional[str] = Field(default=None, description="Overrides LLM_BASE_URL / CHUTES_BASE_URL / OPENAI_BASE_URL")

    def endpoint(self) -> Endpoint:
        ep = resolve_endpoint()
        if self.base_url:
            ep = Endpoint(base_url=self.base_url, api_key=ep.api_key if ep else "", source="resource")
        return require_endpoint(ep)

    def caller(self, cfg: ChainConfig, paths: Paths, log: Callable[[str], None]) -> LLMCaller:
        return LLMCaller(self.endpoint(), cfg.calls, CallCache(paths.cache_db), log=log)


def warehouse_io_manager(database: str | None = None) -> DuelDuckDBIOManager:
    return DuelDuckDBIOManager(warehouse=WarehouseResource(target=database))


def build_resources(database: str | None = None) -> dict:
    warehouse = WarehouseResource(target=database)
    return {"settings": DuelSettings(), "llm": LLMResource(), "warehouse": warehouse,
            "io_manager": DuelDuckDBIOManager(warehouse=warehouse)}
