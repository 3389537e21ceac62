"""Paths, environment and `chain.toml` configuration. No Dagster imports.

Every knob is optional; `load_config()` returns the built-in defaults when no file exists.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

PARTITION_KEY_PATTERN = r"[A-Za-z0-9._-]+"
_KEY_RE = re.compile(rf"\A{PARTITION_KEY_PATTERN}\Z")

SOURCE_FORMATS = ("swe_zero", "mini_swe_agent", "coderforge", "sera", "sera_rectified")
METRICS = ("correctness", "grounding", "progress", "protocol", "efficiency")
BUCKETS = ("final", "refined", "defeat")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


def validate_partition_key(key: str) -> str:
    if not key or not _KEY_RE.match(key) or "..." in key:
        raise ConfigError(
            f"invalid partition key {key!r}: use only {PARTITION_KEY_PATTERN} (letters, digits, '.', '_', '-'), "
            "non-empty and without '...'"
        )
    return key


# ---------------------------------------------------------------- paths


def duel_home() -> Path:
    return Path(os.environ.get("DUEL_HOME") or "./.duel").expanduser().resolve()


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls) -> "Paths":
        return cls(duel_home())

    @property
    def warehouse(self) -> Path | str:
        """``$DUEL_WAREHOUSE`` when set (a path, or ``md:<db>`` for MotherDuck), else the file in DUEL_HOME."""
        return os.environ.get("DUEL_WAREHOUSE") or self.home / "warehouse.duckdb"

    @property
    def prompt_dir(self) -> Path:
        return self.home / "prompt"

    def prompt_file(self, key: str) -> Path:
        return self.prompt_dir / f"{validate_partition_key(key)}.json"

    def bucket_dir(self, bucket: str) -> Path:
        return self.home / bucket

    @property
    def export_dir(self) -> Path:
        return self.home / "export"

    @property
    def report_dir(self) -> Path:
        return self.home / "report"

    @property
    def report(self) -> Path:
        return self.report_dir / "report.md"

    @property
    def cache_db(self) -> Path:
        return self.home / "cache" / "llm_calls.sqlite"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster_home").resolve()

    def ensure(self) -> "Paths":
        for d in (self.prompt_dir, self.report_dir, self.cache_db.parent, *(self.bucket_dir(b) for b in BUCKETS)):
            d.mkdir(parents=True, exist_ok=True)
        return self


# ---------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str = field(repr=False)  # never printed
    source: str  # which variable family supplied it (LLM / CHUTES / OPENAI)


_ENDPOINT_FAMILIES = ("LLM", "CHUTES", "OPENAI")


def resolve_endpoint(environ: dict[str, str] | None = None) -> Endpoint | None:
    """The first family with a base URL set wins: LLM_*, then CHUTES_*, then OPENAI_*."""
    env = os.environ if environ is None else environ
    for fam in _ENDPOINT_FAMILIES:
        url = env.get(f"{fam}_BASE_URL")
        if url:
            return Endpoint(base_url=url.rstrip("/"), api_key=env.get(f"{fam}_API_KEY", ""), source=fam)
    return None


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values that must never be written anywhere (used to scrub error text)."""
    env = os.environ if environ is None else environ
    names = [f"{fam}_API_KEY" for fam in _ENDPOINT_FAMILIES] + ["HF_TOKEN"]
    return [env[n] for n in names if env.get(n) and len(env[n]) >= 4]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    for s in secrets if secrets is not None else secret_values():
        text = text.replace(s, "***")
    return text


def duel_mode(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get("DUEL_MODE", "2").strip()
    if raw not in ("1", "2"):
        raise ConfigError(f"DUEL_MODE must be 1 (challenger vs reference) or 2 (challenger vs king), got {raw!r}")
    return int(raw)


# ---------------------------------------------------------------- chain.toml


@dataclass
class SourceSpec:
    format: str
    path: str
    split: str = "train"
    weight: float = 1.0


@dataclass
class SamplingConfig:
    prompts: int = 400  # turns `duel-assets sample` draws by default
    turns_per_file: int = 200
    seed: int = 0
    max_history_chars: int = 120_000  # longer histories are trimmed in the middle
    max_observation_chars: int = 20_000
    # sources larger than this (bytes) or on the hub are read block by block, only the blocks a
    # window needs; smaller ones are read whole and sampled exactly over all their turns
    block_mode_min_bytes: int = 256 * 1024 * 1024
    turns_per_trajectory: int = 1  # block mode: turns taken from one trajectory
    jsonl_block_lines: int = 256  # block mode: lines per JSONL block


@dataclass
class FiltersConfig:
    min_reward: float = -1e9  # trajectories with a reward below this are skipped (no reward: kept)
    outcome: str = "any"  # "any" or "submitted"
    max_history_tokens: int = 0  # 0: sampling.max_history_chars decides; else ~4 characters a token
    excluded_repos: list[str] = field(default_factory=list)
    excluded_ids: list[str] = field(default_factory=list)


@dataclass
class GenerationConfig:
    model: str = "gpt-4o-mini"
    temperature: float = 0.7
    max_tokens: int = 1024


@dataclass
class JudgeConfig:
    models: list[str] = field(default_factory=lambda: ["gpt-4o-mini"])
    max_tokens: int = 1024
    token_limits: dict[str, int] = field(default_factory=dict)  # per-judge max_tokens override
    temperature: float = 0.0
    position_swap: bool = True
    max_history_chars: int = 24_000


@dataclass
class CallsConfig:
    concurrency: int = 16
    requests_per_minute: float = 0.0  # 0 = unlimited
    tokens_per_minute: float = 0.0  # estimated prompt tokens; 0 = unlimited
    retry_budget: int = 6  # attempts per call, first one included
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 120.0
    max_failure_rate: float = 0.5  # above this the step fails (completed calls stay cached)


@dataclass
class GateConfig:
    min_margin: float = 5.0
    resamples: int = 2000
    confidence: float = 0.95
    min_parsed_fraction: float = 0.8


@dataclass
class BucketConfig:
    final: float = 80.0
    refined: float = 66.0


@dataclass
class LeakageConfig:
    action: str = "demote"  # leak suspects never go to final: "demote" to refined or "drop" to defeat


@dataclass
class ChecksConfig:
    min_parse_rate: float = 0.9  # judge_scores: parsed judgements / judged
    max_leak_rate: float = 0.2  # challenger_answers: leak suspects / answered
    min_format_ok_rate: float = 0.8  # king_answers and challenger_answers: format_ok / answered


@dataclass
class ExportConfig:
    buckets: list[str] = field(default_factory=lambda: ["final", "refined"])  # what counts as training data
    require_gate: bool = True  # only partitions whose gate is ACCEPT
    layout: str = "openai"  # "openai": native chat messages; "source": each source's own encoding
    reasoning: str = "keep"  # "keep" or "drop" the reasoning of assistant messages


@dataclass
class PRRecordsConfig:
    path: str = ""  # empty: the bundled records


@dataclass
class ChainConfig:
    sources: list[SourceSpec] = field(default_factory=list)
    pr_records: PRRecordsConfig = field(default_factory=PRRecordsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judges: JudgeConfig = field(default_factory=JudgeConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    buckets: BucketConfig = field(default_factory=BucketConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    metric_weights: dict[str, float] = field(default_factory=lambda: {m: 1.0 for m in METRICS})
    excluded_instance_ids: list[str] = field(default_factory=list)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> {prompt, completion} per 1M tokens
    origin: str = "built-in defaults"


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
        default = getattr(cls(), key)
        if is_dataclass(default):
            value = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true/false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(data: dict[str, Any], origin: str = "<dict>") -> ChainConfig:
    data = dict(data)
    sources_raw = data.pop("sources", [])
    cfg = _build(ChainConfig, {k: v for k, v in data.items()}, "chain") if data else ChainConfig()
    sources = []
    for i, raw in enumerate(sources_raw):
        where = f"sources[{i}]"
        if not isinstance(raw, dict) or "format" not in raw or "path" not in raw:
            raise ConfigError(f"{where}: needs 'format' and 'path'")
        if raw["format"] not in SOURCE_FORMATS:
            raise ConfigError(f"{where}.format: unknown source format {raw['format']!r} (one of {', '.join(SOURCE_FORMATS)})")
        sources.append(SourceSpec(**{k: raw[k] for k in ("format", "path", "split", "weight") if k in raw}))
    cfg.sources = sources
    unknown = set(cfg.metric_weights) - set(METRICS)
    if unknown:
        raise ConfigError(f"metric_weights: unknown metric(s) {sorted(unknown)} (known: {', '.join(METRICS)})")
    cfg.metric_weights = {m: float(cfg.metric_weights.get(m, 1.0)) for m in METRICS}
    if cfg.leakage.action not in ("demote", "drop"):
        raise ConfigError(f"leakage.action: expected 'demote' or 'drop', got {cfg.leakage.action!r}")
    if cfg.export.layout not in ("openai", "source"):
        raise ConfigError(f"export.layout: expected 'openai' or 'source', got {cfg.export.layout!r}")
    if cfg.export.reasoning not in ("keep", "drop"):
        raise ConfigError(f"export.reasoning: expected 'keep' or 'drop', got {cfg.export.reasoning!r}")
    if cfg.filters.outcome not in ("any", "submitted"):
        raise ConfigError(f"filters.outcome: expected 'any' or 'submitted', got {cfg.filters.outcome!r}")
    if cfg.filters.max_history_tokens:
        cfg.sampling.max_history_chars = cfg.filters.max_history_tokens * 4
    if not 0 < cfg.sampling.turns_per_file <= 200:
        raise ConfigError("sampling.turns_per_file: must be between 1 and 200")
    if cfg.calls.concurrency < 1 or cfg.calls.retry_budget < 1:
        raise ConfigError("calls.concurrency and calls.retry_budget must be >= 1")
    if not cfg.judges.models:
        raise ConfigError("judges.models: at least one judge model")
    cfg.origin = origin
    return cfg


def config_path() -> Path | None:
    explicit = os.environ.get("DUEL_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise ConfigError(f"DUEL_CONFIG points to {p}, which does not exist")
        return p
    p = Path("chain.toml")
    return p if p.exists() else None


def load_config(path: Path | str | None = None) -> ChainConfig:
    p = Path(path) if path else config_path()
    if p is None:
        return ChainConfig()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return parse_config(data, origin=str(p.resolve()))
