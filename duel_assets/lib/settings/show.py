"""The resolved configuration, each value with where it came from (for ``duel-assets config``).
Secrets are never shown: keys are reported as set or unset, URLs without credentials."""
from __future__ import annotations

from typing import NamedTuple

from . import endpoints, env
from .errors import key_path, toml_value
from .fields import Table
from .load import label
from .model import ChainConfig, PRRecordsConfig, PRRecordSpec
from .paths import Paths
from .secrets import call_store_kind


class Row(NamedTuple):
    key: str
    value: str
    origin: str


def _var_origin(name: str, default: str = "default") -> str:
    o = env.origin(name)
    return default if o == "unset" else f"{name} ({o})"


def _secret(name: str | None) -> str:
    value = env.getenv(name) if name else None
    return f"set ({len(value)} characters, not shown)" if value else "unset"


def _call_store(paths: Paths) -> str:
    where = paths.call_cache
    kind = call_store_kind(where) if paths.call_cache_url else "sqlite"
    return f"PostgreSQL {env.mask_url(where)}" if kind == "postgres" else f"SQLite {where}"


def environment_rows(paths: Paths | None = None) -> list[Row]:
    paths = paths or Paths.from_env()
    rows = []
    cfg_file = env.config_path()
    if cfg_file is None:
        rows.append(Row("chain.toml", "none (built-in defaults)", "default"))
    else:
        rows.append(Row("chain.toml", str(cfg_file), _var_origin("DUEL_CONFIG", "./chain.toml")))
    rows += [
        Row("DUEL_HOME", str(paths.home), _var_origin("DUEL_HOME", "default (./.duel)")),
        Row("DAGSTER_HOME", str(paths.dagster_home), _var_origin("DAGSTER_HOME", "default ($DUEL_HOME/dagster_home)")),
        Row("warehouse", env.mask_url(str(paths.warehouse)), _var_origin("DUEL_WAREHOUSE", "default ($DUEL_HOME/warehouse.duckdb)")),
        Row("call store", _call_store(paths), _var_origin("DUEL_CALL_CACHE", "default ($DUEL_HOME/cache/llm_calls.sqlite)")),
    ]
    mode = env.getenv("DUEL_MODE") or "2"
    rows.append(Row("DUEL_MODE", mode, _var_origin("DUEL_MODE")))
    ev = env.endpoint_vars()
    if ev is None:
        rows.append(Row("endpoint", "none: set LLM_BASE_URL and LLM_API_KEY (or CHUTES_API_KEY alone)", "unset"))
    else:
        url_origin = _var_origin(ev.base_url_var) if ev.base_url_var else f"default for {_var_origin('CHUTES_API_KEY')}"
        rows.append(Row("endpoint", env.mask_url(ev.base_url), url_origin))
        rows.append(Row("api key", _secret(ev.api_key_var), _var_origin(ev.api_key_var) if ev.api_key_var else "unset"))
    loaded = env.dotenv_files()
    rows.append(Row(".env", ", ".join(f"{f} ({', '.join(names)})" for f, names in loaded.items()) or "none loaded",
                    "working directory"))
    hf = env.hf_token_var()
    rows.append(Row("HF token", _secret(hf), _var_origin(hf) if hf else "unset"))
    return rows


def _given(model: Table, name: str, parent_given: bool) -> bool:
    return parent_given and name in model.model_fields_set


def config_rows(cfg: ChainConfig) -> list[Row]:
    """Every chain.toml key with its value and origin ("chain.toml" or "default")."""
    from_file = not cfg.origin.startswith(("<", "built-in"))
    where = label(cfg.origin) if from_file else "chain.toml"
    rows: list[Row] = []

    def origin(loc: list, given: bool) -> str:
        if not given:
            return "default"
        spelled = cfg.spelling.get(loc[0])
        return f"{where} [{spelled}]" if spelled else where

    def walk(model: Table, loc: list, given: bool) -> None:
        for name in type(model).model_fields:
            v, here = getattr(model, name), _given(model, name, given)
            if isinstance(v, PRRecordsConfig):
                specs: list[PRRecordSpec | None] = list(v.specs) or [None]
                for i, spec in enumerate(specs):
                    k = "pr_records" if len(specs) == 1 else f"pr_records[{i}]"
                    text = "bundled sample records" if spec is None else (
                        spec.path + (f" (format {spec.format})" if spec.format else ""))
                    rows.append(Row(k, text, origin([name], here)))
            elif isinstance(v, Table):
                walk(v, loc + [name], here)
            elif name == "endpoints":  # listed above with the roles that use them, header values not shown
                rows.append(Row("endpoints", ", ".join(v) or "none (the environment's)", origin([name], here)))
            elif name == "sources":
                for i, s in enumerate(v):
                    rows.append(Row(f"sources[{i}]", f"{s.format} {s.path} (split {s.split}, weight {s.weight:g})",
                                    origin([name], here)))
                if not v:
                    rows.append(Row("sources", "bundled samples", "default"))
            else:
                o = origin(loc + [name], here)
                if loc + [name] == ["sampling", "max_history_chars"] and cfg.filters.max_history_tokens:
                    o = f"{where} (filters.max_history_tokens x 4)"
                rows.append(Row(key_path(loc + [name]), toml_value(v, 120), o))

    walk(cfg, [], from_file)
    return rows


def summary_rows(cfg: ChainConfig) -> list[Row]:
    """What a run will use, in a few lines."""
    by_key = {r.key: r for r in config_rows(cfg)}
    judges = by_key["judges.models"]
    return [
        Row("generation", cfg.generation.model, by_key["generation.model"].origin),
        Row("judges", ", ".join(cfg.judges.models), judges.origin),
        *[r for r in by_key.values() if r.key.startswith(("sources", "pr_records"))],
    ]


def render(rows: list[Row]) -> str:
    width = max((len(r.key) for r in rows), default=0)
    vwidth = min(max((len(r.value) for r in rows), default=0), 60)
    return "\n".join(f"  {r.key:<{width}}  {r.value:<{vwidth}}  ({r.origin})" for r in rows)


def endpoint_rows(cfg: ChainConfig) -> list[Row]:
    """Each endpoint with the roles that call it: URL without credentials, key and headers not shown."""
    rows = []
    for d in endpoints.describe(cfg):
        where = "environment" if d.name == endpoints.DEFAULT and d.name not in cfg.endpoints else f"[endpoints.{d.name}]"
        rows += [Row(d.name, d.url, where), Row(f"{d.name} key", d.key, where),
                 Row(f"{d.name} roles", ", ".join(d.roles) or "none", "[roles]"),
                 Row(f"{d.name} limits", d.limits, where)]
        if d.headers != "none":
            rows.append(Row(f"{d.name} headers", d.headers, where))
    return rows


def describe_all(cfg: ChainConfig, paths: Paths | None = None) -> str:
    parts = ["environment:", render(environment_rows(paths)),
             "", "endpoints (roles -> endpoint):", render(endpoint_rows(cfg)),
             "", "what runs will use:", render(summary_rows(cfg)),
             "", "chain.toml, every key:", render(config_rows(cfg))]
    return "\n".join(parts)

