"""Which configuration a step ran under: a hash of it and where it came from, for the metadata of
every materialization (a re-run under another configuration then shows in the UI)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .model import ChainConfig

# the variables that choose the configuration: which chain.toml, and the duel mode it runs in
CONFIG_VARIABLES = ("DUEL_CONFIG", "DUEL_MODE")


def config_hash(cfg: ChainConfig, mode: int) -> str:
    """The first 16 hex digits of the sha256 of the effective configuration: every chain.toml key
    with its default filled in, and the duel mode. The same settings written differently (comments,
    key order, train_data's table names) hash the same."""
    doc = {"chain": cfg.model_dump(mode="json", warnings=False), "duel_mode": mode}  # prices are kept as plain tables
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def config_metadata(cfg: ChainConfig, mode: int, variables: Mapping[str, str]) -> dict[str, str]:
    """``config_hash``, ``config_file`` (the chain.toml read, or the built-in defaults) and
    ``config_env`` (the variables of :data:`CONFIG_VARIABLES` that were set, ``NAME=value``; none
    of them holds a secret)."""
    shown = " ".join(f"{k}={variables[k]}" for k in CONFIG_VARIABLES if variables.get(k))
    return {"config_hash": config_hash(cfg, mode), "config_file": cfg.origin, "config_env": shown or "none"}
