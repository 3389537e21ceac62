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
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .settings import ChainConfig, ConfigError, SourceSpec, validate_partition_key
from .sources import BUNDLED_SOURCES, BadRow, iter_rows
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


def build_pool(cfg: ChainConfig) -> Pool:
    """Read every source, cut turns, and shuffle them (weighted interleave across sources)."""
    per_source: list[tuple[SourceSpec, list[Turn]]] = []
    pool = Pool(turns=[])
    excluded = set(cfg.excluded_instance_ids) | set(cfg.filters.excluded_ids)
    for spec in effective_sources(cfg):
        reader = reader_for(spec.format)
        turns: list[Turn] = []
        for _, row in iter_rows(spec):
            pool.rows_read += 1
            if isinstance(row, BadRow):
                pool.skipped[row.reason] += 1
                continue
            try:
                traj = reader(row)
            except BadRecord as e:
                pool.skipped[e.reason] += 1
                continue
            reason = filter_reason(traj, cfg, excluded)
            if reason:
                pool.skipped[reason] += 1
                continue
            pool.trajectories += 1
            cut, skips = cut_turns(traj, cfg.sampling.max_history_chars, cfg.sampling.max_observation_chars)
            pool.skipped.update(skips)
            turns.extend(cut)
        seen: set[str] = set()
        unique = []
        for t in turns:
            if t.turn_id in seen:  # the same rollout twice in a source
                pool.skipped["duplicate_turn_id"] += 1
                continue
            seen.add(t.turn_id)
            unique.append(t)
        rng = random.Random(f"{cfg.sampling.seed}:{spec.format}:{spec.path}")
        rng.shuffle(unique)
        per_source.append((spec, unique))
    rng = random.Random(cfg.sampling.seed)
    queues = [list(reversed(t)) for _, t in per_source]
    weights = [max(s.weight, 0.0) for s, _ in per_source]
    while any(queues):
        live = [i for i, q in enumerate(queues) if q and weights[i] > 0]
        if not live:
            break
        i = rng.choices(live, weights=[weights[j] for j in live])[0]
        pool.turns.append(queues[i].pop())
    return pool


def window(key: str, pool_size: int, per_file: int) -> tuple[int, int]:
    """[start, end) positions in the (cyclic) pool for this key."""
    m = _NUMBERED_KEY.match(key)
    if m:
        total, index = int(m["total"]), int(m["index"])
        start = index * per_file
        end = min(start + per_file, max(total, start))
        return start, end
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
    start = digest % max(pool_size, 1)
    return start, start + per_file


def sample_for_key(key: str, cfg: ChainConfig, pool: Pool | None = None) -> dict:
    validate_partition_key(key)
    pool = pool or build_pool(cfg)
    if not pool.turns:
        raise ConfigError(f"the configured sources yielded no usable turn (skipped: {dict(pool.skipped)})")
    start, end = window(key, len(pool.turns), cfg.sampling.turns_per_file)
    n = len(pool.turns)
    chosen = [pool.turns[j % n] for j in range(start, end)] if end - start <= n else [pool.turns[j % n] for j in range(start, start + n)]
    return {
        "prompt_file": key,
        "version": PROMPT_FILE_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.sampling.seed,
        "window": [start, start + len(chosen)],
        "pool_size": n,
        "sources": [{"format": s.format, "path": s.path, "weight": s.weight} for s in effective_sources(cfg)],
        "rows_read": pool.rows_read,
        "skipped": dict(pool.skipped),
        "turns": [t.to_record() for t in chosen],
    }


def numbered_keys(total: int, per_file: int, stem: str = "prompts") -> list[str]:
    return [f"{stem}_{total}_{i:03d}" for i in range(math.ceil(total / per_file))]


def write_json_atomic(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, indent=1)
    os.replace(tmp, path)


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
