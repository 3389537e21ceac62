"""The code location's resources: the settings (``defs/settings.py``), the LLM endpoint, the warehouse
and its IO manager. `build_resources()` reads the environment once, through
``DuelSettings.from_environment()``; the other resources take what they need from those settings.
"""

from collections.abc import Callable
from typing import Optional

import dagster as dg
from pydantic import Field

from duel_assets.defs.io_manager import DuelDuckDBIOManager
from duel_assets.defs.settings import DuelSettings
from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib.calls import LLMCaller
from duel_assets.lib.calls.routes import RoutedCaller
from duel_assets.lib.calls.store_pg import open_store
from duel_assets.lib.settings import ChainConfig, ConfigError, Endpoint, Paths, endpoints


class LLMResource(dg.ConfigurableResource):
    """The LLM call layer on the endpoint of its `DuelSettings` (the key is resolved when a step
    runs and is never part of run config). ``base_url`` overrides the endpoint's URL."""

    settings: DuelSettings
    base_url: Optional[str] = Field(default=None, description="Overrides the endpoint's base URL")

    def __init__(self, settings: Optional[DuelSettings] = None, **kwargs):
        # Dagster types resource classes with dataclass_transform, so mypy gives the base class a
        # field-less __init__; at run time it takes the fields as keywords (Dagster does not accept a
        # default_factory for a nested resource, hence this __init__).
        super().__init__(settings=settings if settings is not None else DuelSettings.from_environment(), **kwargs)  # type: ignore[call-arg]

    def endpoint(self) -> Endpoint:
        if not self.base_url:
            return self.settings.endpoint()
        try:
            key = self.settings.endpoint().api_key
        except ConfigError:
            key = ""
        return Endpoint.of(self.base_url, key, "resource")

    def caller(self, cfg: ChainConfig, paths: Paths, log: Callable[[str], None],
               judges_only: bool = False) -> LLMCaller | RoutedCaller:
        """The caller of the environment's endpoint; with ``[endpoints]`` / ``[roles]`` in chain.toml,
        one caller per endpoint a role uses, each call sent to its role's (one call store, one budget
        and one set of prices for all)."""
        store, progress = open_store(paths.call_cache), self.settings.show_progress()
        if not endpoints.is_routed(cfg):
            return LLMCaller(self.endpoint(), cfg.calls, store, log=log, progress=progress, prices=cfg.prices)
        callers = {}
        for name in endpoints.used(cfg, judges_only):
            spec = cfg.endpoints.get(name)
            ep = self.endpoint() if spec is None else endpoints.spec_endpoint(name, spec)
            callers[name] = LLMCaller(ep, endpoints.limits(cfg, name), store, log=log, progress=progress,
                                      prices=cfg.prices)
        return RoutedCaller(callers, lambda role, model: endpoints.route(cfg, role, model))


def warehouse_io_manager(database: str | None = None) -> DuelDuckDBIOManager:
    return DuelDuckDBIOManager(warehouse=WarehouseResource(target=database))


def build_resources(database: str | None = None) -> dict:
    """The resources of the code location. The warehouse target is read when a step runs
    ($DUEL_WAREHOUSE, else the file in $DUEL_HOME), so a conninfo's password never becomes config."""
    settings = DuelSettings.from_environment()
    warehouse = WarehouseResource(settings=settings, target=database)
    return {"settings": settings, "llm": LLMResource(settings=settings), "warehouse": warehouse,
            "io_manager": DuelDuckDBIOManager(warehouse=warehouse)}
