"""The SFT export's rows and its per-partition shards.

One shard pair per partition (``export/data/train-<key>.parquet``, ``export/jsonl/train-<key>.jsonl``),
written from that partition's own rows under one schema per layout, so ``datasets`` reads every
shard as one table and exporting partition 5,000 costs what exporting partition 1 did.
"""
from __future__ import annotations

import json
from collections import Counter

from ..settings import ExportConfig, Paths
from ..system.files import replacing, write_text_atomic
from .layouts import openai_layout, source_layout
from .paths import SHARD, partition_files
from .trajectory_shards import turn_records

LAYOUTS = ("openai", "source", "trajectory")
COLUMNS = 2  # the shards' columns: 2 added contamination; a partition written with others is exported again
REASONING = ("keep", "drop")
NO_LICENSE = "(none in the row)"


def sft_row(doc: dict, layout: str = "openai", reasoning: str = "keep") -> dict:
    """A training row: the visible history, then the challenger's answer as the target; which
    messages are the target is in ``target_index`` and each message's ``train`` flag."""
    turn, chal = doc["turn"], doc["challenger"] or {}
    encode = openai_layout if layout == "openai" else source_layout
    messages, tools, target_index = encode(turn, chal, reasoning == "keep")
    meta = turn.get("source_meta")
    return {
        "messages": messages, "tools": tools, "target_index": target_index,
        "source": turn.get("source"), "protocol": turn.get("protocol"), "instance_id": turn.get("instance_id"),
        "turn_id": doc["turn_id"], "prompt_file": doc["prompt_file"], "bucket": doc["bucket"], "score": doc["score"],
        "opponent": doc.get("opponent"), "license": turn.get("license"), "reward": turn.get("reward"),
        "source_meta": json.dumps(meta, ensure_ascii=False) if meta else None,
        "model": chal.get("model"), "served_model": chal.get("served_model"), "standin": bool(chal.get("standin")),
        "contamination": turn.get("contamination") or None,
    }


def shard_schema(layout: str):
    """One schema for every shard of a layout, so that ``datasets`` reads them as one table even when
    a shard has no tool calls at all (pandas would type such a column as null)."""
    import pyarrow as pa

    meta = [("target_index", pa.int32()), ("source", pa.string()), ("protocol", pa.string()),
            ("instance_id", pa.string()), ("turn_id", pa.string()), ("prompt_file", pa.string()),
            ("bucket", pa.string()), ("score", pa.float64()), ("opponent", pa.string()), ("license", pa.string()),
            ("reward", pa.float64()), ("source_meta", pa.string()), ("model", pa.string()),
            ("served_model", pa.string()), ("standin", pa.bool_()), ("contamination", pa.list_(pa.string()))]
    if layout == "source":
        return pa.schema([("messages", pa.string()), ("tools", pa.string()), *meta])
    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    message = pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning_content", pa.string()),
                         ("tool_calls", pa.list_(call)), ("tool_call_id", pa.string()), ("name", pa.string()),
                         ("train", pa.bool_())])
    tool = pa.struct([("type", pa.string()), ("function", pa.struct([
        ("name", pa.string()), ("description", pa.string()), ("parameters", pa.string())]))])
    return pa.schema([("messages", pa.list_(message)), ("tools", pa.list_(tool)), *meta])


def gated_out(gate_verdict: str | None, require_gate: bool) -> str | None:
    """Why a partition's rows stay out of the SFT export, or None."""
    return "gate REJECT" if require_gate and gate_verdict != "ACCEPT" else None


def write_partition_sft(paths: Paths, key: str, records: list[dict], cfg: ExportConfig, gate_verdict: str) -> dict:
    """This partition's SFT rows as its own shards, from its own export documents; a partition
    whose gate is not ACCEPT (when the gate is required) has no shards. Returns what the manifest
    records for the card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = partition_files(paths, key)
    excluded = gated_out(gate_verdict, cfg.require_gate)
    trajectory = cfg.layout == "trajectory"  # rows are built over all partitions by the report (trajectory_shards)
    if trajectory and not excluded:
        turn_records(paths, key, records)
    elif not excluded:
        files.trajectory_turns.unlink(missing_ok=True)
    rows = [] if excluded else [sft_row(r["document"], "openai" if trajectory else cfg.layout, cfg.reasoning)
                                for r in records if r["bucket"] in cfg.buckets]
    if excluded or not rows or trajectory:  # no shard rather than an empty one (datasets cannot read an empty parquet)
        for f in (files.parquet, files.jsonl):
            f.unlink(missing_ok=True)
    else:
        with replacing(files.parquet) as tmp:  # hidden from data/*.parquet until complete
            pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema(cfg.layout)), tmp)
        write_text_atomic(files.jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {"rows": len(rows), "excluded": excluded, "gate": gate_verdict, "layout": cfg.layout,
            "reasoning": cfg.reasoning, "columns": COLUMNS, "weight": cfg.weight, "truncate": cfg.truncate_after_last_trained,
            **{f"by_{w}": dict(Counter(r[w] for r in rows)) for w in ("source", "bucket", "protocol")},
            "by_license": dict(Counter(r["license"] or NO_LICENSE for r in rows)),
            "by_source_license": dict(Counter(f"{r['source']}\t{r['license'] or NO_LICENSE}" for r in rows)),
            "standin_rows": sum(r["standin"] for r in rows)}


def prune_shards(paths: Paths, keep: set[str]) -> list[str]:
    """Remove the shards whose exact key is not in ``keep``, and the single-file export of earlier
    versions (its rows are in the shards). Returns the names removed."""
    removed = []
    for sub, legacy in (("data", "train-00000-of-00001.parquet"), ("jsonl", "train.jsonl")):
        d = paths.export_dir / sub
        if not d.exists():
            continue
        for f in d.iterdir():
            m = SHARD.match(f.name)
            if f.name == legacy or (m and m["key"] not in keep):
                f.unlink(missing_ok=True)
                removed.append(f"{sub}/{f.name}")
    return sorted(removed)
