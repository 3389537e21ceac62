"""Sampling turns into prompt files. No Dagster imports.

The candidate pool of a configuration is every well-formed turn of its sources, in a fixed order
shuffled once by ``sampling.seed``. A partition key picks a window of that pool:

* ``<name>_<N>_<i>`` (what ``duel-assets sample --prompts N`` writes): window ``i`` of size
  ``turns_per_file``, cut at N turns in all, so the files of one sample never overlap;
* any other key: a window of ``turns_per_file`` turns at an offset derived from the key's hash.

Either way the same key always yields the same turns.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .settings import ChainConfig, ConfigError, SourceSpec, validate_partition_key
from .blocks import blocks_for, read_block, total_bytes
from .sources import BUNDLED_SOURCES, BadRow, iter_rows, resolve_local
from .trajectories import BadRecord, Turn, cut_turns, reader_for, turn_from_record

PROMPT_FILE_VERSION = 1
_NUMBERED_KEY = re.compile(r"\A(?P<stem>.*?)_(?P<total>\d+)_(?P<index>\d+)\Z")


@dataclass
class Pool:
    turns: list[Turn]
    skipped: Counter = field(default_factory=Counter)
    rows_read: int = 0
    trajectories: int = 0


def effective_sources(cfg: ChainConfig) -> list[SourceSpec]:
    return cfg.sources or BUNDLED_SOURCES


def filter_reason(traj, cfg: ChainConfig, excluded: set[str]) -> str | None:
    f = cfg.filters
    if traj.instance_id in excluded:
        return "filtered_excluded_id"
    if traj.repo and traj.repo in f.excluded_repos:
        return "filtered_excluded_repo"
    if traj.reward is not None and traj.reward < f.min_reward:
        return "filtered_min_reward"
    if f.outcome == "submitted" and traj.outcome != "submitted":
        return "filtered_outcome"
    return None


class _Cutter:
    """Row -> usable turns of one source, counting every skip by reason."""

    def __init__(self, spec: SourceSpec, cfg: ChainConfig, pool: Pool):
        self.reader = reader_for(spec.format)
        self.cfg = cfg
        self.pool = pool
        self.excluded = set(cfg.excluded_instance_ids) | set(cfg.filters.excluded_ids)

    def __call__(self, row, per_trajectory: int | None = None) -> list[Turn]:
        """Usable turns of the row; with ``per_trajectory``, at most that many (seeded by the
        trajectory), and only those are built."""
        self.pool.rows_read += 1
        if isinstance(row, BadRow):
            self.pool.skipped[row.reason] += 1
            return []
        try:
            traj = self.reader(row)
        except BadRecord as e:
            self.pool.skipped[e.reason] += 1
            return []
        reason = filter_reason(traj, self.cfg, self.excluded)
        if reason:
            self.pool.skipped[reason] += 1
            return []
        self.pool.trajectories += 1
        select = None
        if per_trajectory is not None:
            seed = f"{self.cfg.sampling.seed}:{traj.traj_id}"
            select = lambda steps: steps if len(steps) <= per_trajectory else random.Random(seed).sample(steps, per_trajectory)  # noqa: E731
        turns, skips = cut_turns(traj, self.cfg.sampling.max_history_chars, self.cfg.sampling.max_observation_chars, select)
        self.pool.skipped.update(skips)
        return turns


def source_mode(spec: SourceSpec, cfg: ChainConfig) -> str:
    """``pool`` (read whole, exact), ``blocks`` (large local parquet/JSONL) or ``stream`` (hub)."""
    files = resolve_local(spec.path)
    if files is None:
        return "stream"
    blockable = all(f.suffix == ".parquet" or f.name.endswith(".jsonl") for f in files)
    return "blocks" if blockable and total_bytes(files) >= cfg.sampling.block_mode_min_bytes else "pool"


def source_pool(spec: SourceSpec, cfg: ChainConfig) -> Pool:
    """Every usable turn of one (small) source, deduplicated, shuffled by the seed."""
    pool = Pool(turns=[])
    cut = _Cutter(spec, cfg, pool)
    seen: set[str] = set()
    for _, row in iter_rows(spec):
        for t in cut(row):
            if t.turn_id in seen:  # the same rollout twice in a source
                pool.skipped["duplicate_turn_id"] += 1
                continue
            seen.add(t.turn_id)
            pool.turns.append(t)
    random.Random(f"{cfg.sampling.seed}:{spec.format}:{spec.path}").shuffle(pool.turns)
    return pool


def _interleave(groups: list[list[Turn]], weights: list[float], seed) -> list[Turn]:
    rng = random.Random(seed)
    queues = [list(reversed(g)) for g in groups]
    out = []
    while any(queues):
        live = [i for i, q in enumerate(queues) if q]
        i = rng.choices(live, weights=[max(weights[j], 1e-9) for j in live])[0]
        out.append(queues[i].pop())
    return out


def build_pool(cfg: ChainConfig) -> Pool:
    """All usable turns of every source, read whole (for inspection and small sources)."""
    total = Pool(turns=[])
    groups, weights = [], []
    for spec in effective_sources(cfg):
        p = source_pool(spec, cfg)
        total.skipped.update(p.skipped)
        total.rows_read += p.rows_read
        total.trajectories += p.trajectories
        groups.append(p.turns)
        weights.append(spec.weight)
    total.turns = _interleave(groups, weights, cfg.sampling.seed)
    return total


def window_start(key: str, width: int, size: int) -> int:
    """Where ``key``'s window begins: numbered keys (``<stem>_<total>_<i>``) take consecutive,
    disjoint windows of ``width``; any other key a fixed offset in [0, size) from its hash."""
    m = _NUMBERED_KEY.match(key)
    if m:
        return int(m["index"]) * width
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % max(size, 1)


def window(key: str, pool_size: int, per_file: int) -> tuple[int, int]:
    """[start, end) positions in the (cyclic) pool for this key."""
    start = window_start(key, per_file, pool_size)
    m = _NUMBERED_KEY.match(key)
    return start, min(start + per_file, max(int(m["total"]), start)) if m else start + per_file


def shares(n: int, weights: list[float]) -> list[int]:
    """n split by weight, largest remainder first."""
    tot = sum(max(w, 0.0) for w in weights)
    if n <= 0 or tot <= 0:
        return [0] * len(weights)
    raw = [n * max(w, 0.0) / tot for w in weights]
    out = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)[: n - sum(out)]:
        out[i] += 1
    return out


@dataclass
class SourceWindow:
    turns: list[Turn]
    info: dict
    skipped: Counter


def _cut_until(cut, rows, per_trajectory: int, chosen: list[Turn], count: int) -> None:
    """Cut turns from ``rows`` into ``chosen`` until it holds ``count``."""
    for row in rows:
        if len(chosen) >= count:
            return
        chosen.extend(cut(row, per_trajectory))


def _pool_window(key: str, spec: SourceSpec, cfg: ChainConfig, per_file: int, count: int, pool: Pool) -> SourceWindow:
    n = len(pool.turns)
    start, _ = window(key, n, per_file)
    take = min(count, n)
    chosen = [pool.turns[j % n] for j in range(start, start + take)] if n else []
    return SourceWindow(chosen, {"mode": "pool", "pool_size": n, "window": [start, start + take],
                                 "rows_read": pool.rows_read}, pool.skipped)


def _block_window(key: str, spec: SourceSpec, cfg: ChainConfig, per_file: int, count: int,
                  cache_dir: Path | None) -> SourceWindow:
    files = resolve_local(spec.path) or []
    blocks = blocks_for(files, cfg.sampling.jsonl_block_lines, cache_dir)
    if not blocks:
        raise ConfigError(f"source {spec.path!r} has no readable blocks")
    seed = f"{cfg.sampling.seed}:{spec.format}:{spec.path}"
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    tpt = max(1, cfg.sampling.turns_per_trajectory)
    avg_rows = sum(b.rows for b in blocks) / len(blocks)
    per_window = max(1, math.ceil(1.5 * per_file / (avg_rows * tpt)))  # blocks reserved for one window
    start = window_start(key, per_window, len(blocks))
    pool = Pool(turns=[])
    cut = _Cutter(spec, cfg, pool)
    chosen: list[Turn] = []
    used = 0
    for j in range(start, start + per_window):
        if len(chosen) >= count or used >= len(blocks):
            break
        b = blocks[order[j % len(blocks)]]
        used += 1
        rows = list(read_block(b))
        random.Random(f"{seed}:{b.path}:{b.index}").shuffle(rows)
        _cut_until(cut, rows, tpt, chosen, count)
    chosen = chosen[:count]
    return SourceWindow(chosen, {"mode": "blocks", "blocks_total": len(blocks), "blocks_read": used,
                                 "block_window": [start, start + per_window], "rows_read": pool.rows_read,
                                 "shortfall": count - len(chosen)}, pool.skipped)


def _stream_window(key: str, spec: SourceSpec, cfg: ChainConfig, per_file: int, count: int) -> SourceWindow:
    """Hub datasets in streaming mode: a seeded shuffle buffer, then skip to the window and take."""
    from datasets import load_dataset

    token = os.environ.get("HF_TOKEN") or None
    if spec.path.startswith("hf://"):
        kind = "parquet" if spec.path.endswith(".parquet") else "json"
        ds = load_dataset(kind, data_files=spec.path, split=spec.split, streaming=True, token=token)
    else:
        ds = load_dataset(spec.path, split=spec.split, streaming=True, token=token)
    tpt = max(1, cfg.sampling.turns_per_trajectory)
    rows_per_window = math.ceil(1.5 * per_file / tpt)
    start = window_start(key, rows_per_window, 100_000)
    ds = ds.shuffle(seed=cfg.sampling.seed, buffer_size=10_000).skip(start).take(rows_per_window)
    pool = Pool(turns=[])
    cut = _Cutter(spec, cfg, pool)
    chosen: list[Turn] = []
    _cut_until(cut, ds, tpt, chosen, count)
    chosen = chosen[:count]
    return SourceWindow(chosen, {"mode": "stream", "row_window": [start, start + rows_per_window],
                                 "rows_read": pool.rows_read, "shortfall": count - len(chosen)}, pool.skipped)


def sample_for_key(key: str, cfg: ChainConfig, pools: dict | None = None, cache_dir: Path | None = None) -> dict:
    """The prompt file payload for ``key``. ``pools`` caches whole-source pools between keys."""
    validate_partition_key(key)
    per_file = cfg.sampling.turns_per_file
    m = _NUMBERED_KEY.match(key)
    count = min(per_file, max(0, int(m["total"]) - int(m["index"]) * per_file)) if m else per_file
    specs = effective_sources(cfg)
    weights = [s.weight for s in specs]
    per_file_shares, count_shares = shares(per_file, weights), shares(count, weights)
    pools = {} if pools is None else pools
    groups, infos, skipped = [], [], Counter()
    for spec, pf, n in zip(specs, per_file_shares, count_shares):
        mode = source_mode(spec, cfg)
        if mode == "pool":
            ck = (spec.format, spec.path, cfg.sampling.seed)
            if ck not in pools:
                pools[ck] = source_pool(spec, cfg)
            w = _pool_window(key, spec, cfg, pf, n, pools[ck])
        elif mode == "blocks":
            w = _block_window(key, spec, cfg, pf, n, cache_dir)
        else:
            w = _stream_window(key, spec, cfg, pf, n)
        groups.append(w.turns)
        infos.append({"format": spec.format, "path": spec.path, "weight": spec.weight, "turns": len(w.turns), **w.info})
        skipped.update(w.skipped)
    chosen = _interleave(groups, weights, f"{cfg.sampling.seed}:{key}")
    if not chosen:
        raise ConfigError(f"the configured sources yielded no usable turn for {key} (skipped: {dict(skipped)})")
    return {
        "prompt_file": key,
        "version": PROMPT_FILE_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.sampling.seed,
        "sources": infos,
        "rows_read": sum(i.get("rows_read", 0) for i in infos),
        "skipped": dict(skipped),
        "turns": [t.to_record() for t in chosen],
    }


def numbered_keys(total: int, per_file: int, stem: str = "prompts") -> list[str]:
    return [f"{stem}_{total}_{i:03d}" for i in range(math.ceil(total / per_file))]


class PromptFileError(ValueError):
    pass


@dataclass
class LoadedPromptFile:
    turns: list[Turn]
    skipped: Counter
    meta: dict


def load_prompt_file(path: Path, max_turns: int = 200) -> LoadedPromptFile:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PromptFileError(f"prompt file {path} is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise PromptFileError(f"prompt file {path} is not JSON: {e}") from None
    if isinstance(doc, list):
        doc = {"turns": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("turns"), list):
        raise PromptFileError(f"prompt file {path} must be a JSON list of turns or an object with a 'turns' list")
    skipped: Counter = Counter()
    turns: list[Turn] = []
    seen: set[str] = set()
    for rec in doc["turns"]:
        try:
            t = turn_from_record(rec)
        except BadRecord as e:
            skipped[e.reason] += 1
            continue
        if t.turn_id in seen:
            skipped["duplicate_turn_id"] += 1
            continue
        if len(turns) >= max_turns:
            skipped["over_200_turns"] += 1
            continue
        seen.add(t.turn_id)
        turns.append(t)
    meta = {k: v for k, v in doc.items() if k != "turns"}
    return LoadedPromptFile(turns=turns, skipped=skipped, meta=meta)
