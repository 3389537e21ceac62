"""Reading `chain.toml`: train_data's table names, the typed models, the rules that tie keys
together, and one error line per problem (all problems at once)."""
from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import tomllib
from pydantic import ValidationError

from ..system.bounded import InputRefused, read_bounded
from . import endpoints, env
from .base import ConfigError
from .errors import error_line, key_path, toml_value
from .model import ChainConfig

# train_data's names for two tables: [judge] (the panel, token limits) and [duel] (gate thresholds)
ALIASES = {"judge": "judges", "duel": "gate"}


def label(origin: str) -> str:
    """A config file's name as it is best shown: relative to the working directory when inside it."""
    try:
        return str(Path(origin).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return origin


def _rename_aliases(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    data, spelling, errors = dict(data), {}, []
    for alias, name in ALIASES.items():
        if alias not in data:
            continue
        if name in data:
            errors.append(f"{alias}: given together with [{name}]; allowed: one of them "
                          f"([{alias}] is train_data's name for [{name}])")
            data.pop(alias)
            continue
        data[name] = data.pop(alias)
        spelling[name] = alias
    return data, spelling, errors


def _cross_checks(cfg: ChainConfig, spelling: dict[str, str]) -> list[str]:
    """Rules over two keys or more, each named as the user wrote it."""
    def k(*loc: str) -> str:
        return key_path([spelling.get(loc[0], loc[0]), *loc[1:]])

    out = []
    if cfg.buckets.refined > cfg.buckets.final:
        out.append(f"{k('buckets', 'refined')}: got {cfg.buckets.refined:g} (above {k('buckets', 'final')} = "
                   f"{cfg.buckets.final:g}); allowed: 0 <= refined <= final <= 100")
    if cfg.calls.backoff_max_s < cfg.calls.backoff_base_s:
        out.append(f"{k('calls', 'backoff_max_s')}: got {cfg.calls.backoff_max_s:g} (below {k('calls', 'backoff_base_s')} = "
                   f"{cfg.calls.backoff_base_s:g}); allowed: a number >= backoff_base_s")
    if cfg.calls.deadline_s < cfg.calls.timeout_s:
        out.append(f"{k('calls', 'deadline_s')}: got {cfg.calls.deadline_s:g} (below {k('calls', 'timeout_s')} = "
                   f"{cfg.calls.timeout_s:g}); allowed: a number of seconds >= timeout_s and <= 86400")
    for model, n in Counter(cfg.judges.models).items():
        if n > 1:
            out.append(f"{k('judges', 'models')}: got {toml_value(model)} {n} times; allowed: each judge once")
    for model in cfg.judges.token_limits:
        if model not in cfg.judges.models:
            out.append(f"{k('judges', 'token_limits', model)}: got a limit for a model that is not a judge; "
                       f"allowed: the models of {k('judges', 'models')} ({', '.join(cfg.judges.models)})")
    for b, n in Counter(cfg.export.buckets).items():
        if n > 1:
            out.append(f"{k('export', 'buckets')}: got {toml_value(b)} {n} times; allowed: each bucket once")
    if sum(cfg.metric_weights.values()) <= 0:
        out.append(f"metric_weights: got {toml_value(cfg.metric_weights)} (the weights sum to 0); "
                   "allowed: numbers >= 0 with a positive sum")
    if cfg.calls.max_usd is not None:
        unpriced = [m for m in dict.fromkeys([cfg.generation.model, *cfg.judges.models]) if m not in cfg.prices]
        if unpriced:
            out.append(f"{k('calls', 'max_usd')}: got {cfg.calls.max_usd:g} but [prices] has no entry for "
                       f"{', '.join(toml_value(m) for m in unpriced)}; allowed: a budget only when every model "
                       f"called has its prices, e.g. [prices.{toml_value(unpriced[0])}] prompt = 0.15, completion = 0.60")
    for name, n in Counter(b.name for b in cfg.decontamination.benchmarks).items():
        if n > 1:
            out.append(f"decontamination.benchmarks: got name {toml_value(name)} {n} times; allowed: each name once")
    seen = Counter((s.format, s.path, s.split) for s in cfg.sources)
    for i, s in enumerate(cfg.sources):
        if seen[(s.format, s.path, s.split)] > 1:
            out.append(f"sources[{i}]: got {s.format} {toml_value(s.path)} (split {s.split}) more than once; "
                       "allowed: each source once (use weight to favour one)")
            seen[(s.format, s.path, s.split)] = 1
    return out + endpoints.cross_checks(cfg, k)


def parse_config(data: dict[str, Any], origin: str = "<dict>") -> ChainConfig:
    """A validated :class:`ChainConfig`; :class:`ConfigError` lists every problem, one line each."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: got {type(data).__name__}; allowed: a table of settings", origin)
    data, spelling, errors = _rename_aliases(data)
    pr = data.get("pr_records")
    pr_form = "table" if isinstance(pr, dict) else "array" if isinstance(pr, list) else None
    cfg: ChainConfig | None = None
    try:
        cfg = ChainConfig.model_validate(data)
    except ValidationError as e:
        errors += [error_line(err, ChainConfig, spelling, pr_form) for err in e.errors()]
    if cfg is not None:
        errors += _cross_checks(cfg, spelling)
    if errors:
        prefix = "" if origin.startswith("<") else f"{label(origin)}: "
        raise ConfigError([prefix + line for line in errors], origin)
    assert cfg is not None  # a failed validation left its errors above
    if cfg.filters.max_history_tokens:
        cfg.sampling.max_history_chars = cfg.filters.max_history_tokens * 4
    cfg.origin = origin
    cfg.spelling = spelling
    return cfg


MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ConfigError(f"{label(str(path))}: no such file", str(path))
    try:
        return read_bounded(path, "configuration file", MAX_CONFIG_BYTES)
    except InputRefused as e:
        raise ConfigError(f"{label(str(path))}: {e}", str(path)) from None


def _toml(path: Path, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label(str(path))}: cannot be read ({e})", str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{label(str(path))}: not valid TOML: {e}", str(path)) from None
    except RecursionError:
        raise ConfigError(f"{label(str(path))}: not valid TOML: nested deeper than the parser allows", str(path)) from None


def read_toml(path: Path) -> dict[str, Any]:
    return _toml(path, _read(path))


# (file, sha256 of its bytes) -> the configuration parsed from them: a file is parsed once per process
# for the same bytes, however many steps, resources and commands of the process load it
_PARSED: OrderedDict[tuple[str, str], ChainConfig] = OrderedDict()
_PARSED_KEPT = 8


def load_config(path: Path | str | None = None) -> ChainConfig:
    """``path``, else ``$DUEL_CONFIG``, else ``./chain.toml``, else the built-in defaults.

    Every call reads the file (a changed file is seen at once) and returns a configuration of its
    own; bytes already parsed in this process are not parsed again."""
    p = Path(path) if path else env.config_path()
    if p is None:
        return ChainConfig()
    data = _read(p)
    key = (str(p.resolve()), hashlib.sha256(data).hexdigest())
    cfg = _PARSED.get(key)
    if cfg is None:
        cfg = _PARSED[key] = parse_config(_toml(p, data), origin=key[0])
        while len(_PARSED) > _PARSED_KEPT:
            _PARSED.popitem(last=False)
    return cfg.model_copy(deep=True)
