"""Every file of one partition, named from its exact key.

Each kind of file lives in its own folder with one name per key (``<key>.json``, ``train-<key>.*``,
or a folder ``<key>/``), so no key's names can be another key's: ``x`` and ``x.turns`` get
``report/partitions/x.json`` and ``report/partitions/x.turns.json``, and the turn detail is under
``report/turns/``. Clearing a partition removes names derived from its key, never a pattern that
could match another key.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..settings import ConfigError, Paths, validate_partition_key

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def partition_name(key: str) -> str:
    """The key as a file or folder name: a valid partition key that is not ``.`` or ``..``."""
    validate_partition_key(key)
    if set(key) == {"."}:
        raise ConfigError(f"invalid partition key {key!r}: a key made only of dots would name a parent folder")
    return key


def turn_file_name(turn_id: str) -> str:
    """``<turn_id>.json`` when the id is a safe name of at most 180 characters; otherwise its safe
    form plus a hash of the whole id, so two turns of a partition never share a file."""
    safe = _UNSAFE.sub("_", turn_id)[:180]
    if safe != turn_id or safe.strip(".") == "":
        safe = f"{safe}-{hashlib.sha256(turn_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
    return f"{safe}.json"


@dataclass(frozen=True)
class PartitionFiles:
    key: str
    summary: Path  # report/partitions/<key>.json: gate, scores, counts (written by duel_verdict)
    turns: Path  # report/turns/<key>.json: per-turn detail for report.md (duel_verdict)
    manifest: Path  # report/exports/<key>.json: files and SFT rows written (exported_buckets)
    parquet: Path  # export/data/train-<key>.parquet (exported_buckets)
    jsonl: Path  # export/jsonl/train-<key>.jsonl (exported_buckets)
    home: Path
    curation: Path  # report/curation/<key>.json: decontamination and near-duplicates (sampled_turns)
    trajectory_turns: Path  # report/trajectory_turns/<key>.json: the partition's turns for trajectory rows (exported_buckets)

    def bucket_dir(self, bucket: str) -> Path:
        """``<bucket>/<key>/``: this partition's export documents of one bucket."""
        return self.home / bucket / self.key

    def document(self, bucket: str, turn_id: str) -> Path:
        return self.bucket_dir(bucket) / turn_file_name(turn_id)


def partition_files(paths: Paths, key: str) -> PartitionFiles:
    key = partition_name(key)
    report, export = paths.report_dir, paths.export_dir
    return PartitionFiles(
        key=key, home=paths.home,
        summary=report / "partitions" / f"{key}.json",
        turns=report / "turns" / f"{key}.json",
        manifest=report / "exports" / f"{key}.json",
        parquet=export / "data" / f"train-{key}.parquet",
        jsonl=export / "jsonl" / f"train-{key}.jsonl",
        curation=report / "curation" / f"{key}.json",
        trajectory_turns=report / "trajectory_turns" / f"{key}.json",
    )


SHARD = re.compile(r"\Atrain-(?P<key>.+)\.(?:parquet|jsonl)\Z")  # a shard's name -> its exact key


def export_lock_path(paths: Paths) -> Path:
    """Held while a partition writes its shards and manifest, and while the report reads the
    manifests, prunes shards and writes the card: the card always describes the shards on disk."""
    return paths.report_dir / ".export.lock"
