"""Source rows -> usable turns of one source, every skip counted by reason.

A row is read by its format's reader, filtered (excluded ids and repos, ``min_reward``,
``outcome``, then the ``where`` predicate, evaluated in batches), and cut into turns.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..duel import protocol as proto
from ..settings import ChainConfig, SourceSpec
from ..turn import BadRecord, Trajectory, Turn, visible
from .curation.decontaminate import decide, decontaminator
from .curation.trajectory_store import whole_trajectory
from .readers import reader_for
from .row_filter import RowFilter, compile_where, trajectory_fields
from .sources import BadRow
from .trim import trim_history


def reference_check(traj: Trajectory, msg: dict) -> proto.FormatCheck:
    return proto.check_answer(traj.protocol, msg.get("content"), msg.get("tool_calls"), traj.tools)


def cut_turns(traj: Trajectory, max_history_chars: int = 120_000, max_obs_chars: int = 20_000,
              select: Callable[[list[int]], list[int]] | None = None) -> tuple[list[Turn], Counter]:
    """One turn per assistant step whose reference action is well formed.

    ``select`` picks among the usable step numbers before any history is built (a sampler that
    needs one turn of a trajectory pays for one). Messages the reader dropped are counted too."""
    skips: Counter = Counter(traj.skips)
    usable: list[tuple[int, int]] = []  # (message index, step)
    step = -1
    seen_task = False
    for i, msg in enumerate(traj.messages):
        if msg["role"] == "user":
            seen_task = True
        if msg["role"] != "assistant":
            continue
        step += 1
        if not seen_task:
            skips["step_without_task"] += 1
            continue
        check = reference_check(traj, msg)
        if not check.ok:
            skips[f"reference_{check.reason}"] += 1
            continue
        usable.append((i, step))
    if select is not None:
        keep = set(select([s for _, s in usable]))
        usable = [(i, s) for i, s in usable if s in keep]
    turns: list[Turn] = []
    for i, step in usable:
        msg = traj.messages[i]
        history, trimmed = trim_history([visible(m) for m in traj.messages[:i]], max_history_chars, max_obs_chars)
        turns.append(Turn(
            turn_id=f"{traj.traj_id}.s{step:03d}", instance_id=traj.instance_id, repo=traj.repo, source=traj.source,
            traj_id=traj.traj_id, step=step, protocol=traj.protocol, history=history,
            reference={k: v for k, v in msg.items() if k in ("role", "content", "tool_calls", "reasoning_content")},
            tools=traj.tools, outcome=traj.outcome, trimmed=trimmed, license=traj.license, reward=traj.reward,
            source_meta=traj.source_meta, hidden=traj.hidden,
        ))
    return turns, skips


WHERE_BATCH = 64
DECONTAMINATION_BATCH = 256
DROPPED_LISTED = 200


@dataclass
class Pool:
    turns: list[Turn]
    skipped: Counter = field(default_factory=Counter)
    rows_read: int = 0
    trajectories: int = 0
    where_unseen: list[str] = field(default_factory=list)  # fields the where predicate names that no row had
    dropped: list[dict] = field(default_factory=list)  # rows skipped as contaminated (the first few, by id)
    sources: dict[str, dict] = field(default_factory=dict)  # traj_id -> whole trajectory ([export] layout trajectory)
    clusters: Any = None  # the near-duplicate clusters a whole-source pool was reduced with


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


class Cutter:
    """Rows -> turns of one source; skips go to ``pool.skipped``."""

    def __init__(self, spec: SourceSpec, cfg: ChainConfig, pool: Pool, where: RowFilter | None = None):
        self.spec = spec
        self.reader = reader_for(spec.format)
        self.cfg = cfg
        self.pool = pool
        self.where = where if where is not None else compile_where(cfg.filters.where)
        self.excluded = set(cfg.excluded_instance_ids) | set(cfg.filters.excluded_ids)
        self.decon = decontaminator(cfg)
        self.keep_sources = cfg.export.layout == "trajectory"

    def _trajectory(self, row):
        self.pool.rows_read += 1
        if isinstance(row, BadRow):
            self.pool.skipped[row.reason] += 1
            return None
        try:
            traj = self.reader(row)
        except BadRecord as e:
            self.pool.skipped[e.reason] += 1
            return None
        reason = filter_reason(traj, self.cfg, self.excluded)
        if reason:
            self.pool.skipped[reason] += 1
            return None
        traj.source_meta = {**traj.source_meta, "source_path": self.spec.path}
        return traj

    def _cut(self, traj, per_trajectory: int | None, tags: tuple[str, ...] = ()) -> list[Turn]:
        self.pool.trajectories += 1
        select = None
        if per_trajectory is not None:
            seed = f"{self.cfg.sampling.seed}:{traj.traj_id}"
            select = lambda steps: steps if len(steps) <= per_trajectory else random.Random(seed).sample(steps, per_trajectory)
        s = self.cfg.sampling
        turns, skips = cut_turns(traj, s.max_history_chars, s.max_observation_chars, select)
        self.pool.skipped.update(skips)
        for t in turns:
            t.contamination = list(tags) or None
        if self.keep_sources and turns:
            self.pool.sources[traj.traj_id] = whole_trajectory(traj, s.max_history_chars, s.max_observation_chars)
        return turns

    def _contaminated(self, traj) -> tuple[str, ...] | None:
        """None when a ``drop`` benchmark matches (the row is skipped and counted), else the tags."""
        if self.decon is None:
            return ()
        decision = decide(self.decon.check(traj.instance_id, traj.repo, traj.messages, traj.source_meta, traj.hidden))
        if decision.excluded_reason:
            self.pool.skipped[decision.excluded_reason] += 1
            if len(self.pool.dropped) < DROPPED_LISTED:
                self.pool.dropped.append({"traj_id": traj.traj_id, "instance_id": traj.instance_id,
                                          "excluded_reason": decision.excluded_reason})
            return None
        return decision.tags

    def turns(self, rows: Iterable, per_trajectory: int | None = None) -> Iterator[list[Turn]]:
        """The usable turns of each row in turn (with ``per_trajectory``, at most that many per
        trajectory, seeded by it, and only those are built). Rows are read ahead by a small batch
        so the ``where`` predicate runs once per batch."""
        batch: list = []
        size = WHERE_BATCH if self.where is not None else DECONTAMINATION_BATCH  # PR records are looked up per batch
        for row in rows:
            traj = self._trajectory(row)
            if traj is None:
                continue
            if self.where is None and self.decon is None:
                yield self._cut(traj, per_trajectory)
                continue
            batch.append(traj)
            if len(batch) >= size:
                yield from self._flush(batch, per_trajectory)
                batch = []
        if batch:
            yield from self._flush(batch, per_trajectory)

    def _flush(self, batch: list, per_trajectory: int | None) -> Iterator[list[Turn]]:
        where = self.where
        keeps = where.keep_many([trajectory_fields(t) for t in batch]) if where is not None else [True] * len(batch)
        if self.decon is not None:
            self.decon.prefetch([(t.instance_id, t.repo) for t, k in zip(batch, keeps) if k])
        for traj, keep in zip(batch, keeps):
            if keep is None:
                self.pool.skipped["filtered_where_error"] += 1
            elif not keep:
                self.pool.skipped["filtered_where"] += 1
            elif (tags := self._contaminated(traj)) is not None:
                yield self._cut(traj, per_trajectory, tags)
