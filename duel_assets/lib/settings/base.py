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
# how a turn matches a benchmark instance, strongest first
MatchWay = Literal["instance_id", "repo_commit", "repo_window", "patch_overlap", "problem_statement"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = get_args(SourceFormat)
PR_RECORD_FORMATS: tuple[PRRecordFormat, ...] = get_args(PRRecordFormat)
METRICS: tuple[MetricName, ...] = get_args(MetricName)
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
MATCH_WAYS: tuple[MatchWay, ...] = get_args(MatchWay)


class ConfigError(ValueError):
    """A configuration value is wrong. ``errors`` holds one line per problem, each naming the key
    (or variable) at fault, what was given and what is allowed; ``str()`` joins them."""

    def __init__(self, errors: str | list[str], origin: str | None = None):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.origin = origin
        super().__init__("\n".join(self.errors))


# every file named after a key must fit in a file name: the longest, a shard's temporary file
# (".train-<key>.parquet.<12 hex>.tmp"), adds 32 bytes; 143 bytes is the shortest name limit of
# common file systems (eCryptfs; most allow 255)
MAX_PARTITION_KEY_LENGTH = 100


def partition_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a partition key, or None."""
    if not key or not _KEY_RE.match(key) or "..." in key:
        return (f"use only {PARTITION_KEY_PATTERN} (letters, digits, '.', '_', '-'), non-empty and without '...'")
    if len(key) > MAX_PARTITION_KEY_LENGTH:
        return f"{len(key)} characters, over the {MAX_PARTITION_KEY_LENGTH} a key may have (files are named after it)"
    return None


def validate_partition_key(key: str) -> str:
    problem = partition_key_problem(key)
    if problem:
        shown = key if len(key) <= 60 else key[:57] + "..."
        raise ConfigError(f"invalid partition key {shown!r}: {problem}")
    return key
