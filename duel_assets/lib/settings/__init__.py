"""Paths, environment and `chain.toml` configuration.

``base`` (errors, keys, vocabularies), ``model`` (the typed tables), ``load`` (reading and checking
chain.toml), ``env`` (the only reader of the environment), ``paths``, ``preflight`` (checks a
command makes before it starts work) and ``show`` (the resolved configuration, for
``duel-assets config``). Every knob is optional; ``load_config()`` returns the built-in defaults
when no file exists.
"""
from .base import (
    BUCKETS,
    MATCH_WAYS,
    METRICS,
    PARTITION_KEY_PATTERN,
    PR_RECORD_FORMATS,
    SOURCE_FORMATS,
    ConfigError,
    MetricName,
    validate_partition_key,
)
from .calls_model import CallsConfig
from .env import CHUTES_BASE_URL, Endpoint, config_path, duel_home, duel_mode, mask_url, resolve_endpoint, scrub, secret_values
from .load import ALIASES, load_config, parse_config
from .model import (
    BenchmarkSpec,
    BucketConfig,
    CalibrationConfig,
    ChainConfig,
    ChecksConfig,
    DecontaminationConfig,
    ExportConfig,
    FiltersConfig,
    GateConfig,
    GenerationConfig,
    HiddenInfoConfig,
    JudgeConfig,
    LeakageConfig,
    NearDuplicatesConfig,
    PRRecordsConfig,
    PRRecordSpec,
    ReviewConfig,
    SamplingConfig,
    SourceSpec,
    WarehouseConfig,
)
from .paths import Paths
from .secrets import call_store_kind, endpoint_id, redact

__all__ = [
    "ALIASES", "BUCKETS", "MATCH_WAYS", "BenchmarkSpec", "DecontaminationConfig", "NearDuplicatesConfig", "CHUTES_BASE_URL", "METRICS", "PARTITION_KEY_PATTERN", "PR_RECORD_FORMATS", "SOURCE_FORMATS",
    "BucketConfig",
    "CalibrationConfig", "CallsConfig", "ChainConfig", "ChecksConfig", "ConfigError", "Endpoint", "ExportConfig",
    "FiltersConfig", "GateConfig", "GenerationConfig", "HiddenInfoConfig", "JudgeConfig", "LeakageConfig", "MetricName", "Paths",
    "PRRecordSpec", "PRRecordsConfig", "ReviewConfig", "SamplingConfig", "SourceSpec", "WarehouseConfig", "call_store_kind", "config_path",
    "duel_home", "duel_mode", "endpoint_id", "load_config", "mask_url", "parse_config", "redact", "resolve_endpoint",
    "scrub", "secret_values",
    "validate_partition_key",
]
