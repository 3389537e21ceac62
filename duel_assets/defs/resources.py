"""Resources: settings (paths, chain.toml, endpoint, tokens), the LLM endpoint, the warehouse and its IO manager.

`DuelSettings` is the one owner of the environment: `build_resources()` reads it once (through
``duel_assets.lib.settings.env``) and holds paths and modes as values, secrets as ``EnvVar``s
(resolved when a run starts, hidden in the UI, never part of run config). The library gets plain
values from it.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from duel_assets.defs.io_manager import DuelDuckDBIOManager
from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib.calls.routes import RoutedCaller
from duel_assets.lib.calls.store_pg import open_store
from duel_assets.lib.llm import LLMCaller, require_endpoint
from duel_assets.lib.settings import ChainConfig, ConfigError, Endpoint, Paths, endpoints, env, load_config


def _value(v: Optional[str]) -> Optional[str]:
    """A field's value; an EnvVar not yet resolved by a run (the resource used outside one) is read now."""
    return v.get_value() if isinstance(v, dg.EnvVar) else v


class DuelSettings(dg.ConfigurableResource):
    """Where the pipeline writes ($DUEL_HOME), what it does (chain.toml), which endpoint it calls.

    A field left unset is read from the environment when used (what a bare ``DuelSettings()``
    does); ``DuelSettings.from_environment()`` reads everything once instead."""

    duel_home: Optional[str] = Field(default=None, description="$DUEL_HOME: where everything is written")
    config_path: Optional[str] = Field(default=None, description="chain.toml ($DUEL_CONFIG, else ./chain.toml)")
    warehouse: Optional[str] = Field(default=None, description="$DUEL_WAREHOUSE: a DuckDB path, md:<db> or a DuckLake "
                                     "(an EnvVar: a conninfo may hold a password)")
    duel_mode: Optional[int] = Field(default=None, description="$DUEL_MODE: 2 challenger vs king, 1 vs the reference")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible endpoint (an EnvVar)")
    api_key: Optional[str] = Field(default=None, description="its key (an EnvVar; never shown)")
    endpoint_source: Optional[str] = Field(default=None, description="the variable that chose the endpoint")
    hf_token: Optional[str] = Field(default=None, description="Hugging Face hub token (an EnvVar; never shown)")
    call_cache: Optional[str] = Field(default=None, description="$DUEL_CALL_CACHE: a postgresql:// URL shared by "
                                      "all workers (an EnvVar: it may hold a password)")
    progress: Optional[bool] = Field(default=None, description="terminal progress bars ($DUEL_PROGRESS=1)")
    read_environment: bool = Field(default=True, description="read unset fields from the environment when used")

    @classmethod
    def from_environment(cls) -> "DuelSettings":
        """Everything read now; secrets as EnvVars naming the variables that hold them."""
        ev = env.endpoint_vars()
        cfg = env.config_path()
        hf = env.hf_token_var()
        return cls(
            duel_home=str(env.duel_home()), config_path=str(cfg) if cfg else None,
            warehouse=dg.EnvVar("DUEL_WAREHOUSE") if env.warehouse_url() else None,
            duel_mode=env.duel_mode(),
            base_url=(dg.EnvVar(ev.base_url_var) if ev.base_url_var else ev.base_url) if ev else None,
            api_key=dg.EnvVar(ev.api_key_var) if ev and ev.api_key_var else None,
            endpoint_source=ev.source if ev else None,
            hf_token=dg.EnvVar(hf) if hf else None,
            call_cache=dg.EnvVar("DUEL_CALL_CACHE") if env.call_cache_url() else None,
            progress=env.progress(), read_environment=False,
        )

    def paths(self) -> Paths:
        if self.duel_home or not self.read_environment:
            home = Path(self.duel_home).resolve() if self.duel_home else env.duel_home()
            return Paths(home, _value(self.warehouse), call_cache_url=_value(self.call_cache)).ensure()
        return Paths.from_env().ensure()

    def config(self) -> ChainConfig:
        if self.config_path or self.read_environment:
            return load_config(self.config_path)
        return ChainConfig()

    def mode(self) -> int:
        if self.duel_mode is not None:
            if self.duel_mode not in (1, 2):
                raise ConfigError(f"duel_mode: got {self.duel_mode}; allowed: 1 or 2")
            return self.duel_mode
        return env.duel_mode() if self.read_environment else 2

    def endpoint(self) -> Endpoint:
        """The endpoint, or a ConfigError saying how to set one (or start the stand-in)."""
        if self.base_url:
            url = _value(self.base_url)
            if not url:  # an EnvVar whose variable this process does not have
                raise ConfigError(f"base_url: the variable {self.base_url} is empty or not set in this process; it holds the endpoint URL")
            return Endpoint.of(url, _value(self.api_key) or "", self.endpoint_source or "settings")
        return require_endpoint(env.resolve_endpoint() if self.read_environment else None)

    def token(self) -> Optional[str]:
        """The Hugging Face hub token, or None."""
        if self.hf_token:
            return _value(self.hf_token)
        return env.getenv(env.hf_token_var() or "HF_TOKEN") if self.read_environment else None

    def show_progress(self) -> bool:
        return self.progress if self.progress is not None else (env.progress() if self.read_environment else False)


class LLMResource(dg.ConfigurableResource):
    """The LLM call layer on the endpoint of its `DuelSettings` (the key is resolved when a step
    runs and is never part of run config). ``base_url`` overrides the endpoint's URL."""

    settings: DuelSettings
    base_url: Optional[str] = Field(default=None, description="Overrides the endpoint's base URL")

    def __init__(self, settings: Optional[DuelSettings] = None, **kwargs):
        # Dagster types resource classes with dataclass_transform, so mypy gives the base class a
        # field-less __init__; at run time it takes the fields as keywords (Dagster does not accept a
        # default_factory for a nested resource, hence this __init__).
        super().__init__(settings=settings if settings is not None else DuelSettings(), **kwargs)  # type: ignore[call-arg]

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
        one caller per endpoint a role uses, each call sent to its role's (one call store for all)."""
        store, progress = open_store(paths.call_cache), self.settings.show_progress()
        if not endpoints.is_routed(cfg):
            return LLMCaller(self.endpoint(), cfg.calls, store, log=log, progress=progress)
        callers = {}
        for name in endpoints.used(cfg, judges_only):
            spec = cfg.endpoints.get(name)
            ep = self.endpoint() if spec is None else endpoints.spec_endpoint(name, spec)
            callers[name] = LLMCaller(ep, endpoints.limits(cfg, name), store, log=log, progress=progress)
        return RoutedCaller(callers, lambda role, model: endpoints.route(cfg, role, model))


def warehouse_io_manager(database: str | None = None) -> DuelDuckDBIOManager:
    return DuelDuckDBIOManager(warehouse=WarehouseResource(target=database))


def build_resources(database: str | None = None) -> dict:
    """The resources of the code location. The warehouse target is read when a step runs
    ($DUEL_WAREHOUSE, else the file in $DUEL_HOME), so a conninfo's password never becomes config."""
    settings = DuelSettings.from_environment()
    warehouse = WarehouseResource(target=database)
    return {"settings": settings, "llm": LLMResource(settings=settings), "warehouse": warehouse,
            "io_manager": DuelDuckDBIOManager(warehouse=warehouse)}
