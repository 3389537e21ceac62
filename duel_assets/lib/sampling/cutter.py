"""Source rows -> usable turns of one source, every skip counted by reason.

A row is read by its format's reader, filtered (excluded ids and repos, ``min_reward``,
``outcome``, then the ``where`` predicate, evaluated in batches), and cut into turns.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..duel import protocol as proto
from ..settings import ChainConfig, SourceSpec
from ..turn import BadRecord, Trajectory, Turn, visible
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


@dataclass
class Pool:
    turns: list[Turn]
    skipped: Counter = field(default_factory=Counter)
    rows_read: int = 0
    trajectories: int = 0
    where_unseen: list[str] = field(default_factory=list)  # fields the where predicate names that no row had


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

    def _cut(self, traj, per_trajectory: int | None) -> list[Turn]:
        self.pool.trajectories += 1
        select = None
        if per_trajectory is not None:
            seed = f"{self.cfg.sampling.seed}:{traj.traj_id}"
            select = lambda steps: steps if len(steps) <= per_trajectory else random.Random(seed).sample(steps, per_trajectory)
        turns, skips = cut_turns(traj, self.cfg.sampling.max_history_chars, self.cfg.sampling.max_observation_chars, select)
        self.pool.skipped.update(skips)
        return turns

    def turns(self, rows: Iterable, per_trajectory: int | None = None) -> Iterator[list[Turn]]:
        """The usable turns of each row in turn (with ``per_trajectory``, at most that many per
        trajectory, seeded by it, and only those are built). Rows are read ahead by a small batch
        so the ``where`` predicate runs once per batch."""
        batch: list = []
        where = self.where
        for row in rows:
            traj = self._trajectory(row)
            if traj is None:
                continue
            if where is None:
                yield self._cut(traj, per_trajectory)
                continue
            batch.append(traj)
            if len(batch) >= WHERE_BATCH:
                yield from self._flush(where, batch, per_trajectory)
                batch = []
        if where is not None and batch:
            yield from self._flush(where, batch, per_trajectory)

    def _flush(self, where: RowFilter, batch: list, per_trajectory: int | None) -> Iterator[list[Turn]]:
        for traj, keep in zip(batch, where.keep_many([trajectory_fields(t) for t in batch])):
            if keep is None:
                self.pool.skipped["filtered_where_error"] += 1
            elif not keep:
                self.pool.skipped["filtered_where"] += 1
            else:
                yield self._cut(traj, per_trajectory)
