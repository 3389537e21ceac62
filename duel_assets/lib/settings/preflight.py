"""What a command checks before it starts work: chain.toml, DUEL_MODE, DUEL_CALL_CACHE, and that
every path that looks local exists (such a path is never tried as a Hugging Face hub name)."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from . import env
from .base import ConfigError
from .errors import toml_value
from .load import label, load_config
from .model import ChainConfig

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".arrow", ".csv", ".tsv", ".txt",
                 ".gz", ".zst", ".bz2", ".xz", ".zip", ".tar")


def path_kind(path: str) -> str:
    """"bundled", "hf" (an hf:// URL), "hub" (a dataset name ``owner/name``) or "local".

    A path is local when it starts with ``.``, ``/`` or ``~``, has a glob pattern or a data file
    extension, is not of the form ``owner/name``, or names (or starts with) something that exists
    here; only what is left is a hub name."""
    if path.startswith("bundled:"):
        return "bundled"
    if path.startswith("hf://"):
        return "hf"
    if path.startswith((".", "/", "~")) or any(ch in path for ch in "*?[\\"):
        return "local"
    if path.lower().endswith(DATA_SUFFIXES) or path.count("/") > 1:
        return "local"
    if Path(path).exists() or Path(path.split("/", 1)[0]).exists():
        return "local"
    return "hub"


def local_exists(path: str) -> bool:
    p = os.path.expanduser(path)
    if any(ch in p for ch in "*?["):
        return any(Path(f).is_file() for f in glob.iglob(p, recursive=True))
    return Path(p).exists()


def missing_local_paths(cfg: ChainConfig) -> list[str]:
    """One error line per source or PR-record path that looks local and does not exist."""
    out = []
    why = "allowed: an existing local file, folder or glob (a path that looks local is never tried as a hub dataset)"
    for i, s in enumerate(cfg.sources):
        if path_kind(s.path) == "local" and not local_exists(s.path):
            out.append(f"sources[{i}].path: got {toml_value(s.path)}, which does not exist; {why}")
    for i, spec in enumerate(cfg.pr_records.specs):
        where = "pr_records.path" if len(cfg.pr_records.specs) == 1 else f"pr_records[{i}].path"
        if path_kind(spec.path) == "local" and not local_exists(spec.path):
            out.append(f"{where}: got {toml_value(spec.path)}, which does not exist; {why}")
    return out


def validate_for_work(path: Path | str | None = None) -> ChainConfig:
    """The configuration a command will use, checked whole; :class:`ConfigError` lists every problem."""
    errors: list[str] = []
    cfg: ChainConfig | None = None
    try:
        cfg = load_config(path)
    except ConfigError as e:
        errors += e.errors
    for check in (env.duel_mode, env.call_cache_url):
        try:
            check()
        except ConfigError as e:
            errors += e.errors
    if cfg is not None:
        prefix = "" if cfg.origin.startswith(("<", "built-in")) else f"{label(cfg.origin)}: "
        errors += [prefix + line for line in missing_local_paths(cfg)]
    if errors:
        raise ConfigError(errors)
    assert cfg is not None  # load_config failing left its errors above
    return cfg
