"""Sampling turns into prompt files.

Every source is a sequence of *units* in a fixed order shuffled once by ``sampling.seed``: its
turns (a small local source, read whole: ``pool`` mode), or its blocks (parquet row groups or JSONL
line runs of a large local source: ``blocks`` mode; the row groups of a remote parquet split read
through fsspec, e.g. the Hugging Face hub: ``hub`` mode). A partition key picks where its window
starts in that order (:func:`.windows.window_start`, one rule for all modes):

* ``<name>_<N>_<i>`` (what ``duel-assets sample --prompts N`` writes): window ``i``, so the files of
  one sample take consecutive, disjoint windows; a window goes on to the end at most, never round
  to the start, and one that starts past the end is empty;
* any other key: an offset derived from the key's hash; it may go round to just before it.

From there the window takes units in order, each at most once, skipping any turn whose history another prompt file already holds
(``duplicate_history``), until it has its turns or the units run out (``shortfall``). Block and
hub windows read at most :data:`MAX_WINDOW_FACTOR` times the blocks they reserve.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..settings import ChainConfig, ConfigError, SourceSpec, validate_partition_key
from ..turn import Turn
from .blocks import Block, ReadAhead, blocks_for, total_bytes
from .curation.window import CURATION_SKIPS, Curation, Taker, cluster_pool, pool_key, section
from .cutter import Cutter, Pool
from .prompt_files import PROMPT_FILE_VERSION
from .row_filter import compile_where
from .sources import BUNDLED_SOURCES, iter_rows, path_identity, resolve_local
from .windows import key_count, scan_order, window_start

MAX_WINDOW_FACTOR = 4
Taken = Callable[[list[str]], set[str]]  # hashes -> those other prompt files already hold


class NothingToSample(ConfigError):
    """The sources hold no unused turn for this key."""


def effective_sources(cfg: ChainConfig) -> list[SourceSpec]:
    return cfg.sources or BUNDLED_SOURCES


def source_mode(spec: SourceSpec, cfg: ChainConfig) -> str:
    """``pool`` (read whole, exact), ``blocks`` (large local parquet/JSONL) or ``hub`` (remote parquet)."""
    files = resolve_local(spec.path)
    if files is None:
        return "hub"
    blockable = all(f.suffix == ".parquet" or f.name.endswith(".jsonl") for f in files)
    return "blocks" if blockable and total_bytes(files) >= cfg.sampling.block_mode_min_bytes else "pool"


def _seed(cfg: ChainConfig, spec: SourceSpec) -> str:
    return f"{cfg.sampling.seed}:{spec.format}:{path_identity(spec.path)}"


def source_pool(spec: SourceSpec, cfg: ChainConfig) -> Pool:
    """Every usable turn of one (small) source, each history once, shuffled by the seed."""
    pool = Pool(turns=[])
    seen: dict[str, int] = {}
    by_id = cfg.near_duplicates.enabled  # then the smallest turn id of a history stays, whatever the rows' order
    cut = Cutter(spec, cfg, pool)
    for turns in cut.turns(row for _, row in iter_rows(spec)):
        for t in turns:
            if t.history_hash in seen:  # another rollout of the instance shares this history
                pool.skipped["duplicate_history"] += 1
                if by_id and t.turn_id < pool.turns[seen[t.history_hash]].turn_id:
                    pool.turns[seen[t.history_hash]] = t
                continue
            seen[t.history_hash] = len(pool.turns)
            pool.turns.append(t)
    pool.turns, pool.clusters = cluster_pool(pool.turns, cfg, pool.skipped)  # one turn per near-duplicate cluster
    random.Random(_seed(cfg, spec)).shuffle(pool.turns)
    pool.where_unseen = cut.where.unseen_columns() if cut.where is not None else []
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
    dropped: list[dict]  # rows skipped as contaminated, by id


def _pool_window(key: str, per_file: int, count: int, pool: Pool, taken: Taken | None, cur: Curation) -> SourceWindow:
    take = Taker(count, taken, cur, pool.sources)
    if cur.screen and pool.clusters:
        cur.screen.known = pool.clusters.sigs
    visited = 0
    order = list(scan_order(key, per_file, len(pool.turns)))
    for i in range(0, len(order), 256):
        if take.full:
            break
        chunk = order[i:i + 256]
        visited += len(chunk)
        take.offer([pool.turns[j] for j in chunk])
    start = window_start(key, per_file, len(pool.turns))
    info = {"mode": "pool", "pool_size": len(pool.turns), "window_start": start, "positions_visited": visited,
            "rows_read": pool.rows_read, "shortfall": count - len(take.chosen)}
    if pool.where_unseen:
        info["where_columns_never_seen"] = pool.where_unseen
    return SourceWindow(take.chosen, info, pool.skipped + take.skipped, pool.dropped)


def _block_window(key: str, spec: SourceSpec, cfg: ChainConfig, per_file: int, count: int, blocks: list[Block],
                  mode: str, taken: Taken | None, cur: Curation) -> SourceWindow:
    if not blocks:
        raise ConfigError(f"source {spec.path!r} has no readable blocks")
    seed = _seed(cfg, spec)
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    tpt = max(1, cfg.sampling.turns_per_trajectory)
    avg_rows = sum(b.rows for b in blocks) / len(blocks)
    per_window = max(1, math.ceil(1.5 * per_file / (avg_rows * tpt)))  # blocks reserved for one window
    pool = Pool(turns=[])
    cut = Cutter(spec, cfg, pool)
    take = Taker(count, taken, cur, pool.sources)
    clusters = cur.clusters()
    before = Counter(clusters.skipped) if clusters else Counter()
    read: list[Block] = []
    limit = per_window * MAX_WINDOW_FACTOR
    positions = scan_order(key, per_window, len(blocks))
    j = next(positions, None)
    with ReadAhead() as ahead:
        while j is not None and not take.full and len(read) < limit:
            b = blocks[order[j]]
            read.append(b)
            j = next(positions, None)
            # the next block is read for sure when this one cannot fill the window (<= tpt turns a row)
            then = blocks[order[j]] if j is not None and len(read) < limit and count - len(take.chosen) > b.rows * tpt else None
            rows = _read_remote_block(b) if b.remote else ahead.rows(b, then)
            random.Random(f"{seed}:{path_identity(b.path)}:{b.index}").shuffle(rows)
            # with [near_duplicates], the block's turns are reduced to one per cluster before any is taken
            batches = cut.turns(rows, tpt) if clusters is None else [clusters.keep([t for ts in cut.turns(rows, tpt) for t in ts])]
            for turns in batches:
                take.offer(turns)
                if take.full:
                    break
    start = window_start(key, per_window, len(blocks))
    info = {"mode": mode, "blocks_total": len(blocks), "blocks_read": len(read), "block_window": [start, start + per_window],
            "block_bytes": sum(b.size for b in read), "files_read": len({b.path for b in read}),
            "rows_read": pool.rows_read, "shortfall": count - len(take.chosen)}
    if mode == "hub":
        info["files_total"] = len({b.path for b in blocks})
        info["blocks"] = [[b.path, b.index] for b in read]
    if cut.where is not None and cut.where.unseen_columns():
        info["where_columns_never_seen"] = cut.where.unseen_columns()
    near = (clusters.skipped - before) if clusters else Counter()  # near-duplicates in this window's blocks
    return SourceWindow(take.chosen, info, pool.skipped + take.skipped + near, pool.dropped)


def _read_remote_block(b: Block) -> list:
    from .hub import read_remote_row_group

    return read_remote_row_group(b.path, b.index)


def source_blocks(spec: SourceSpec, cfg: ChainConfig, mode: str, cache_dir: Path | None) -> list[Block]:
    if mode == "hub":
        from .hub import remote_blocks

        return remote_blocks(spec, cache_dir)
    return blocks_for(resolve_local(spec.path) or [], cfg.sampling.jsonl_block_lines, cache_dir / "line_index" if cache_dir else None)


def sample_for_key(key: str, cfg: ChainConfig, pools: dict | None = None, cache_dir: Path | None = None,
                   taken: Taken | None = None, cur: Curation | None = None) -> dict:
    """The prompt file payload for ``key``. ``pools`` caches whole-source pools between keys;
    ``cache_dir`` keeps JSONL newline indexes (``line_index/``) and remote parquet footers
    (``parquet_footers/``); ``taken`` says which histories other prompt files already hold; ``cur``
    (:class:`.curation.window.Curation`) screens near-duplicates against a ``DUEL_HOME`` and collects
    whole trajectories. Raises
    :class:`NothingToSample` when no unused turn is left for the key."""
    validate_partition_key(key)
    compile_where(cfg.filters.where)  # a bad predicate fails before any source is read
    per_file = cfg.sampling.turns_per_file
    count = key_count(key, per_file)
    specs = effective_sources(cfg)
    weights = [s.weight for s in specs]
    per_file_shares, count_shares = shares(per_file, weights), shares(count, weights)
    pools = {} if pools is None else pools
    groups: list[list[Turn]] = []
    infos: list[dict] = []
    skipped: Counter[str] = Counter()
    cur = cur or Curation(cfg, key)
    dropped: list[dict] = []
    for spec, pf, n in zip(specs, per_file_shares, count_shares):
        mode = source_mode(spec, cfg)
        if mode == "pool":
            ck = (spec.format, spec.path, spec.split, cfg.sampling.seed, cfg.filters.where, pool_key(cfg))
            if ck not in pools:
                pools[ck] = source_pool(spec, cfg)
            w = _pool_window(key, pf, n, pools[ck], taken, cur)
        else:
            w = _block_window(key, spec, cfg, pf, n, source_blocks(spec, cfg, mode, cache_dir), mode, taken, cur)
        groups.append(w.turns)
        infos.append({"format": spec.format, "path": spec.path, "weight": spec.weight, "requested": n,
                      "turns": len(w.turns), **w.info})
        curated = {k: v for k, v in w.skipped.items() if k.startswith("contaminated:") or k in CURATION_SKIPS}
        if curated:
            infos[-1]["curation_skips"] = curated  # a pool's are the whole source's, in each of its files
        skipped.update(w.skipped)
        dropped += w.dropped
    chosen = _interleave(groups, weights, f"{cfg.sampling.seed}:{key}")
    if not chosen:
        unseen = sorted({c for i in infos for c in i.get("where_columns_never_seen", [])})
        hint = f"; filters.where names fields no row has: {', '.join(unseen)}" if unseen else ""
        raise NothingToSample(f"the configured sources have no unused turn left for {key} "
                              f"(requested {count}; skipped: {dict(skipped)}{hint})")
    return {
        "prompt_file": key,
        "version": PROMPT_FILE_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.sampling.seed,
        "requested": count,
        "delivered": len(chosen),
        "shortfall": count - len(chosen),
        "sources": infos,
        "rows_read": sum(i.get("rows_read", 0) for i in infos),
        "skipped": dict(skipped),
        **section(cfg, chosen, skipped, dropped),
        "turns": [t.to_record() for t in chosen],
    }
