"""Names every settings module shares: the configuration error, partition keys, fixed vocabularies."""
from __future__ import annotations

import re
from typing import Literal, get_args

PARTITION_KEY_PATTERN = r"[A-Za-z0-9._-]+"
_KEY_RE = re.compile(rf"\A{PARTITION_KEY_PATTERN}\Z")

SourceFormat = Literal["swe_zero", "mini_swe_agent", "swe_agent", "coderforge", "sera", "sera_rectified"]
PRRecordFormat = Literal["auto", "swe_rebench", "swe_smith", "swe_bench", "sera"]  # which columns hold a record
MetricName = Literal["correctness", "grounding", "progress", "protocol", "efficiency"]
Bucket = Literal["final", "refined", "defeat"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = get_args(SourceFormat)
PR_RECORD_FORMATS: tuple[PRRecordFormat, ...] = get_args(PRRecordFormat)
METRICS: tuple[MetricName, ...] = get_args(MetricName)
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)


class ConfigError(ValueError):
    """A configuration value is wrong. ``errors`` holds one line per problem, each naming the key
    (or variable) at fault, what was given and what is allowed; ``str()`` joins them."""

    def __init__(self, errors: str | list[str], origin: str | None = None):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.origin = origin
        super().__init__("\n".join(self.errors))


def validate_partition_key(key: str) -> str:
    if not key or not _KEY_RE.match(key) or "..." in key:
        raise ConfigError(
            f"invalid partition key {key!r}: use only {PARTITION_KEY_PATTERN} (letters, digits, '.', '_', '-'), "
            "non-empty and without '...'"
        )
    return key
