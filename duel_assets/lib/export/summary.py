"""The small per-partition files the all-partitions report reads.

One writer per file: ``duel_verdict`` writes a partition's summary and turn detail,
``exported_buckets`` its export manifest; ``duel_report`` only reads them.
"""
from __future__ import annotations

from ..settings import METRICS, Paths
from ..system.files import read_json, write_json_atomic
from ..verdict.buckets import bucket_counts, excluded_counts
from ..verdict.gate import Gate
from ..verdict.verdicts import gate_scores
from .paths import partition_files


def write_partition_summary(paths: Paths, key: str, g: Gate, verdict_rows: list[dict], prov: dict,
                            bucketing: dict | None = None) -> dict:
    """What the overall gate and the report need from one partition: a small summary (gate, the
    scores the gate saw, bucket and exclusion counts, the thresholds it was bucketed with
    (:func:`..verdicts.bucketing`), who answered), read for every partition, and the per-turn detail,
    read only for the report's turn table."""
    files = partition_files(paths, key)
    summary = {"prompt_file": key, "gate": g.to_dict(), "scores": gate_scores(verdict_rows),
               "buckets": bucket_counts(verdict_rows), "excluded": excluded_counts(verdict_rows),
               "bucketing": bucketing, "provenance": prov}
    write_json_atomic(files.turns, [
        {"turn_id": r["turn_id"], "score": r["score"], "bucket": r["bucket"], "excluded_reason": r.get("excluded_reason"),
         "per_metric": {m: r.get(f"{m}_win") for m in METRICS}} for r in verdict_rows])
    write_json_atomic(files.summary, summary)
    return summary


def read_summary(paths: Paths, key: str) -> dict | None:
    return read_json(partition_files(paths, key).summary)


def read_summaries(paths: Paths, keys: list[str]) -> dict[str, dict]:
    """The summaries of ``keys`` that have one, in key order: one small read per partition."""
    out = {}
    for key in sorted(set(keys)):
        summary = read_summary(paths, key)
        if summary is not None:
            out[key] = summary
    return out


def read_turns(paths: Paths, key: str) -> list[dict]:
    return read_json(partition_files(paths, key).turns, [])


def write_manifest(paths: Paths, key: str, files: dict[str, str], sft: dict) -> dict:
    """``exported_buckets``' record of what it wrote: each exported turn's file, and its SFT rows."""
    manifest = {"prompt_file": key, "files": files, "sft": sft}
    write_json_atomic(partition_files(paths, key).manifest, manifest)
    return manifest


def read_manifest(paths: Paths, key: str) -> dict | None:
    return read_json(partition_files(paths, key).manifest)
