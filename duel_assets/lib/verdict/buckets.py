"""A turn's bucket from its duel score, and a partition's turns counted by bucket."""
from __future__ import annotations

from collections import Counter

from ..settings import BucketConfig


def bucket_counts(verdict_rows: list[dict]) -> dict[str, int]:
    """Turns per bucket; a turn without a parsed score counts as ``parse-fail``. Excluded turns are
    not here (see :func:`excluded_counts`): they are never parse-fail."""
    return dict(Counter(r["bucket"] or "parse-fail" for r in verdict_rows if not r.get("excluded_reason")))


def excluded_counts(verdict_rows: list[dict]) -> dict[str, int]:
    """Excluded turns by their ``excluded_reason``."""
    return dict(Counter(r["excluded_reason"] for r in verdict_rows if r.get("excluded_reason")))


def bucket_for(score: float | None, buckets: BucketConfig) -> str | None:
    if score is None:
        return None
    if score >= buckets.final:
        return "final"
    if score >= buckets.refined:
        return "refined"
    return "defeat"
