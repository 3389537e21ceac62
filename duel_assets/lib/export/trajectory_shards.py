"""Trajectory rows over all partitions: each partition's turns, then the shards.

A trajectory's turns can be in several prompt files, so its row is built where every partition is
seen: ``exported_buckets`` writes the partition's dueled turns (``report/trajectory_turns/<key>.json``:
bucket, score, the challenger's answer; the turn's history and move only when the trajectory
store lacks its trajectory), and ``duel_report`` groups the turns of the partitions in the export by
trajectory, reads the trajectories from :class:`..curation.trajectory_store.TrajectoryStore` and
writes ``export/data/trajectories-<i>-of-<n>.parquet`` and ``export/jsonl/trajectories-<i>-of-<n>.jsonl``
(rows sorted by ``traj_id``, :data:`ROWS_PER_SHARD` a shard). That work grows with the export, not
with the partitions a run touched.
"""
from __future__ import annotations

import json
import re
from collections import Counter

from ..sampling.curation.trajectory_store import TrajectoryStore
from ..sampling.trim import _MARKER_RE
from ..settings import ExportConfig, Paths
from ..system.files import read_json, replacing, write_json_atomic, write_text_atomic
from .paths import partition_files
from .trajectory import RULES, trajectory_row, trajectory_schema

ROWS_PER_SHARD = 5000
SHARD = re.compile(r"\Atrajectories-\d{5}-of-\d{5}\.(?:parquet|jsonl)\Z")
ANSWER = ("content", "reasoning", "tool_calls", "action", "model", "served_model", "standin")


def turn_records(paths: Paths, key: str, records: list[dict]) -> list[dict]:
    """The partition's dueled turns as trajectory rows need them (written by ``exported_buckets``)."""
    docs = [r["document"] for r in records]
    known = TrajectoryStore(paths.home).known(d["turn"].get("traj_id") or "" for d in docs)
    out = []
    for d in docs:
        t, chal = d["turn"], d.get("challenger") or {}
        rec = {"turn_id": d["turn_id"], "traj_id": t.get("traj_id") or d["turn_id"], "step": t.get("step") or 0,
               "bucket": d["bucket"], "score": d.get("score"), "prompt_file": key,
               "contamination": t.get("contamination"), "standin": bool(chal.get("standin")),
               "challenger": {k: chal.get(k) for k in ANSWER}}
        if rec["traj_id"] not in known:  # rebuilt from this turn when no trajectory was kept
            rec["fallback"] = {k: t.get(k) for k in ("history", "reference", "tools", "protocol", "source", "instance_id",
                                                     "license", "reward", "source_meta")}
        out.append(rec)
    write_json_atomic(partition_files(paths, key).trajectory_turns, out)
    return out


def _fallback(turns: list[dict]) -> dict:
    """A trajectory rebuilt from its latest turn: the history and the move (steps trimmed out of the
    history are missing, so only that turn's step is placed then)."""
    last = max(turns, key=lambda t: t["step"])["fallback"]
    msgs = [*(last.get("history") or []), {**(last.get("reference") or {}), "role": "assistant"}]
    trimmed = any(m.get("role") == "user" and _MARKER_RE.match(m.get("content") or "") for m in msgs)
    return {**{k: last.get(k) for k in ("tools", "protocol", "source", "instance_id", "license", "reward", "source_meta")},
            "messages": msgs, "complete": False, "trimmed": trimmed}


def build_rows(paths: Paths, keys: list[str], cfg: ExportConfig) -> tuple[list[dict], dict]:
    """Rows of every trajectory with an exported turn in these partitions, and their figures."""
    by_traj: dict[str, list[dict]] = {}
    for key in keys:
        for t in read_json(partition_files(paths, key).trajectory_turns, []):
            by_traj.setdefault(t["traj_id"], []).append(t)
    exported = {tid: ts for tid, ts in by_traj.items() if any(t["bucket"] in cfg.buckets for t in ts)}
    stored = TrajectoryStore(paths.home).get(exported)
    trained: set[str] = {b for b in cfg.buckets if b != "defeat"}
    rows: list[dict] = []
    rules: Counter = Counter()
    for tid in sorted(exported):
        ts = exported[tid]
        traj = stored.get(tid)
        if traj is None:
            if not any("fallback" in t for t in ts):
                continue
            traj = _fallback([t for t in ts if "fallback" in t])
        if traj.get("trimmed"):
            last = max(t["step"] for t in ts)
            ts = [t for t in ts if t["step"] == last]
            n_steps = sum(1 for m in traj["messages"] if m.get("role") == "assistant")
            ts = [{**t, "step": n_steps - 1} for t in ts]
        row, counted = trajectory_row({**traj, "traj_id": tid}, {t["step"]: t for t in ts}, trained,
                                      cfg.reasoning == "keep", cfg.weight, cfg.truncate_after_last_trained)
        rows.append(row)
        rules.update(counted)
    tokens, trained_tokens = sum(r["tokens"] for r in rows), sum(r["trained_tokens"] for r in rows)
    stats = {"rows": len(rows), "rules": {r: rules.get(r, 0) for r in RULES}, "tokens": tokens,
             "trained_tokens": trained_tokens, "trained_token_share": round(trained_tokens / tokens, 6) if tokens else 0.0,
             "complete": sum(r["complete"] for r in rows), "truncated": sum(r["truncated"] for r in rows),
             "standin_rows": sum(r["standin"] for r in rows),
             "by_source": dict(Counter(r["source"] for r in rows)), "by_protocol": dict(Counter(r["protocol"] for r in rows)),
             "by_source_license": dict(Counter(f"{r['source']}\t{r['license'] or '(none in the row)'}" for r in rows))}
    return rows, stats


def remove_shards(paths: Paths) -> list[str]:
    removed = []
    for sub in ("data", "jsonl"):
        d = paths.export_dir / sub
        if d.is_dir():
            for f in d.iterdir():
                if SHARD.match(f.name):
                    f.unlink(missing_ok=True)
                    removed.append(f"{sub}/{f.name}")
    return sorted(removed)


def write_shards(paths: Paths, keys: list[str], cfg: ExportConfig) -> dict:
    """The trajectory shards of these partitions, replacing any written before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, stats = build_rows(paths, keys, cfg)
    remove_shards(paths)
    n = max(1, -(-len(rows) // ROWS_PER_SHARD)) if rows else 0
    for i in range(n):
        part = rows[i * ROWS_PER_SHARD:(i + 1) * ROWS_PER_SHARD]
        name = f"trajectories-{i:05d}-of-{n:05d}"
        target = paths.export_dir / "data" / f"{name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as tmp:
            pq.write_table(pa.Table.from_pylist(part, schema=trajectory_schema()), tmp)
        write_text_atomic(paths.export_dir / "jsonl" / f"{name}.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part))
    stats["shards"] = n
    return stats
