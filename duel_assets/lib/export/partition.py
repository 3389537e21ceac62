"""Everything ``exported_buckets`` writes for one partition."""
from __future__ import annotations

from dataclasses import dataclass

from ..settings import ExportConfig, Paths
from ..system.locks import file_lock
from .documents import write_documents
from .paths import export_lock_path
from .sft import write_partition_sft
from .summary import write_manifest


@dataclass
class PartitionExport:
    rows: list[dict]  # exported_buckets rows: turn, bucket, score, file
    sft: dict  # this partition's SFT rows and why it is left out, if it is


def export_partition(paths: Paths, key: str, records: list[dict], cfg: ExportConfig, gate_verdict: str,
                     lock_timeout_s: float | None = None) -> PartitionExport:
    """The partition's export documents, its SFT shards and its manifest; nothing of another
    partition, and nothing over all partitions (that is ``duel_report``'s). ``lock_timeout_s``
    bounds the wait for the export lock (``locks.timeout_s``)."""
    rows = write_documents(paths, key, records)
    with file_lock(export_lock_path(paths), lock_timeout_s, what="export", setting="locks.timeout_s"):  # the card being written sees shards and manifest agree
        sft = write_partition_sft(paths, key, records, cfg, gate_verdict)
        write_manifest(paths, key, {r["turn_id"]: r["path"] for r in rows}, sft)
    return PartitionExport(rows, sft)
