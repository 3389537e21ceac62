"""The `settings` resource: where the pipeline writes, what it does and which endpoint it calls.

`DuelSettings` is the one owner of the environment: ``DuelSettings.from_environment()`` reads it once
(through ``duel_assets.lib.settings.env``) and holds paths and modes as values, secrets as
``EnvVar``s (resolved when a run starts, hidden in the UI, never part of run config). The library
gets plain values from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from duel_assets.lib.calls import require_endpoint
from duel_assets.lib.settings import ChainConfig, ConfigError, Endpoint, Paths, env, load_config
from duel_assets.lib.settings.origin import CONFIG_VARIABLES, config_metadata


def value(v: Optional[str]) -> Optional[str]:
    """A field's value; an EnvVar not yet resolved by a run (the resource used outside one) is read now."""
    return v.get_value() if isinstance(v, dg.EnvVar) else v


class DuelSettings(dg.ConfigurableResource):
    """Where the pipeline writes ($DUEL_HOME), what it does (chain.toml, DUEL_MODE), which endpoint it calls.

    Built from the environment by ``DuelSettings.from_environment()``. A field left unset holds its
    default (``./.duel``, the built-in configuration, DUEL_MODE 2, no endpoint); the settings never
    read the environment afterwards. chain.toml itself is read when a step asks for it
    (:meth:`config`), so an edited file applies to the next step without reloading the code."""

    duel_home: Optional[str] = Field(default=None, description="$DUEL_HOME: where everything is written (unset: ./.duel)")
    config_path: Optional[str] = Field(default=None, description="chain.toml ($DUEL_CONFIG, else ./chain.toml); unset: "
                                       "the built-in defaults")
    config_env: Optional[dict[str, str]] = Field(default=None, description="the variables that chose the configuration "
                                                 "(DUEL_CONFIG, DUEL_MODE) as they were read")
    warehouse: Optional[str] = Field(default=None, description="$DUEL_WAREHOUSE: a DuckDB path, md:<db> or a DuckLake "
                                     "(an EnvVar: a conninfo may hold a password)")
    duel_mode: Optional[int] = Field(default=None, description="$DUEL_MODE: 2 challenger vs king (default), 1 vs the reference")
    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible endpoint (an EnvVar)")
    api_key: Optional[str] = Field(default=None, description="its key (an EnvVar; never shown)")
    endpoint_source: Optional[str] = Field(default=None, description="the variable that chose the endpoint")
    hf_token: Optional[str] = Field(default=None, description="Hugging Face hub token (an EnvVar; never shown)")
    call_cache: Optional[str] = Field(default=None, description="$DUEL_CALL_CACHE: a postgresql:// URL shared by "
                                      "all workers (an EnvVar: it may hold a password)")
    progress: Optional[bool] = Field(default=None, description="terminal progress bars ($DUEL_PROGRESS=1)")

    @classmethod
    def from_environment(cls) -> DuelSettings:
        """Everything read now; secrets as EnvVars naming the variables that hold them."""
        ev = env.endpoint_vars()
        cfg = env.config_path()
        hf = env.hf_token_var()
        return cls(
            duel_home=str(env.duel_home()), config_path=str(cfg) if cfg else None,
            config_env={k: v for k in CONFIG_VARIABLES if (v := env.getenv(k))},
            warehouse=dg.EnvVar("DUEL_WAREHOUSE") if env.warehouse_url() else None,
            duel_mode=env.duel_mode(),
            base_url=(dg.EnvVar(ev.base_url_var) if ev.base_url_var else ev.base_url) if ev else None,
            api_key=dg.EnvVar(ev.api_key_var) if ev and ev.api_key_var else None,
            endpoint_source=ev.source if ev else None,
            hf_token=dg.EnvVar(hf) if hf else None,
            call_cache=dg.EnvVar("DUEL_CALL_CACHE") if env.call_cache_url() else None,
            progress=env.progress(),
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run that uses the settings records the process executing it (a run whose process dies
        is then marked failed: ``duel_assets.defs.runs``)."""
        from duel_assets.defs.runs import record_run_process

        record_run_process(context.instance, context.dagster_run)

    def paths(self) -> Paths:
        home = Path(self.duel_home).expanduser().resolve() if self.duel_home else env.duel_home({})
        return Paths(home, value(self.warehouse), call_cache_url=value(self.call_cache)).ensure()

    def config(self) -> ChainConfig:
        """chain.toml as it is now (its bytes are parsed once per process), or the built-in defaults."""
        return load_config(self.config_path) if self.config_path else ChainConfig()

    def config_metadata(self, cfg: ChainConfig) -> dict[str, str]:
        """The configuration's hash and where it came from, for a materialization's metadata."""
        return config_metadata(cfg, self.mode(), self.config_env or {})

    def mode(self) -> int:
        if self.duel_mode is None:
            return 2
        if self.duel_mode not in (1, 2):
            raise ConfigError(f"duel_mode: got {self.duel_mode}; allowed: 1 or 2")
        return self.duel_mode

    def endpoint(self) -> Endpoint:
        """The endpoint, or a ConfigError saying how to set one (or start the stand-in)."""
        if not self.base_url:
            return require_endpoint(None)
        url = value(self.base_url)
        if not url:  # an EnvVar whose variable this process does not have
            raise ConfigError(f"base_url: the variable {self.base_url} is empty or not set in this process; it holds the endpoint URL")
        return Endpoint.of(url, value(self.api_key) or "", self.endpoint_source or "settings")

    def token(self) -> Optional[str]:
        """The Hugging Face hub token, or None."""
        return value(self.hf_token) if self.hf_token else None

    def show_progress(self) -> bool:
        return bool(self.progress)
