"""What one sampling call adds to the sampler: decontamination of rows, near-duplicate control of turns,
and the whole trajectories of the turns it takes.

The sampler (:mod:`..sampler`) builds one :class:`Curation` per key; the cutter asks
:func:`.decontaminate.decontaminator` about each row before cutting it (a row matching a ``drop``
benchmark is skipped as ``contaminated:<benchmark>:<way>``, a ``tag`` match goes on each of its
turns); pools and blocks are reduced to one turn per near-duplicate cluster (:class:`.near_dup.Clusters`);
the window asks :class:`.near_dup_index.Screen` before it takes a turn. The prompt file records all of
it (:func:`section`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ...settings import ChainConfig
from ...turn import Turn
from .decontaminate import decontaminator
from .near_dup import Clusters
from .near_dup_index import NearDupIndex, Screen

DROPPED_LISTED = 200  # rows dropped as contaminated listed by id in a prompt file (all are counted)
CURATION_SKIPS = ("near_duplicate", "near_duplicate_held", "cap_per_instance", "cap_per_repo")


class Curation:
    def __init__(self, cfg: ChainConfig, key: str, home: Path | None = None):
        self.cfg = cfg
        nd = cfg.near_duplicates
        self.screen = Screen(nd, key, NearDupIndex(home) if home else None) if nd.enabled else None
        self.keep_trajectories = cfg.export.layout == "trajectory"
        self.trajectories: dict[str, dict] = {}  # traj_id -> {messages, tools} of the turns taken
        self.seen: set[str] = set()  # the histories taken, from every source of the prompt file

    def clusters(self) -> Clusters | None:
        return self.screen.clusters if self.screen else None

    def took(self, t: Turn, sources: dict[str, dict]) -> None:
        if self.screen:
            self.screen.took(t)
        if self.keep_trajectories and t.traj_id in sources:
            self.trajectories[t.traj_id] = sources[t.traj_id]

    def commit(self) -> None:
        if self.screen:
            self.screen.commit()


class Taker:
    """Collects a source's share of a prompt file: each history once (across its sources: the
    ``seen`` of its :class:`Curation`), none another prompt file holds, and (with
    ``[near_duplicates]``) none near a turn another prompt file holds, within the caps."""

    def __init__(self, count: int, taken: Callable[[list[str]], set[str]] | None, cur: Curation, sources: dict):
        self.count, self.taken, self.cur, self.sources = count, taken, cur, sources
        self.chosen: list[Turn] = []
        self.seen = cur.seen
        self.skipped: Counter = Counter()

    @property
    def full(self) -> bool:
        return len(self.chosen) >= self.count

    def offer(self, turns: list[Turn]) -> None:
        fresh = [t for t in turns if t.history_hash not in self.seen]
        self.skipped["duplicate_history"] += len(turns) - len(fresh)
        held = self.taken([t.history_hash for t in fresh]) if self.taken and fresh else set()
        screen = self.cur.screen
        near = screen.prepare([t for t in fresh if t.history_hash not in held]) if screen else set()
        for t in fresh:
            if self.full:
                return
            if t.history_hash in held or t.history_hash in self.seen:
                self.skipped["duplicate_history"] += 1
                continue
            if screen and (why := screen.reason(t, near)):
                self.skipped[why] += 1  # near_duplicate_held, cap_per_instance, cap_per_repo
                continue
            self.seen.add(t.history_hash)
            self.chosen.append(t)
            self.cur.took(t, self.sources)


def pool_key(cfg: ChainConfig) -> tuple:
    """What else a cached whole-source pool depends on."""
    return (cfg.decontamination.model_dump_json(), cfg.near_duplicates.model_dump_json(), cfg.export.layout)


def cluster_pool(turns: list[Turn], cfg: ChainConfig, skipped: Counter) -> tuple[list[Turn], Clusters | None]:
    """A whole source's turns, one per near-duplicate cluster (when ``[near_duplicates]`` is on)."""
    if not cfg.near_duplicates.enabled:
        return turns, None
    clusters = Clusters(cfg.near_duplicates)
    kept = clusters.keep(turns)
    skipped.update(clusters.skipped)
    return kept, clusters


def by_benchmark(counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{"contaminated:<benchmark>:<way>": n}`` or ``{"<benchmark>:<way>": n}`` -> ``{benchmark: {way: n}}``."""
    out: dict[str, dict[str, int]] = {}
    for label, n in counts.items():
        bench, way = label.removeprefix("contaminated:").split(":", 1)
        out.setdefault(bench, {})[way] = out.get(bench, {}).get(way, 0) + n
    return out


def section(cfg: ChainConfig, turns: list[Turn], skipped: Counter, dropped: list[dict]) -> dict:
    """What a prompt file says about decontamination and near-duplicates (nothing when both are off)."""
    out: dict = {}
    d = decontaminator(cfg)
    if d is not None:
        rows = by_benchmark({k: v for k, v in skipped.items() if k.startswith("contaminated:")})
        tagged = by_benchmark(Counter(tag for t in turns for tag in t.contamination or []))
        c = cfg.decontamination
        out["decontamination"] = {
            "benchmarks": d.versions(), "ways": list(d.ways), "window_days": c.window_days,
            "problem_threshold": c.problem_threshold, "num_perm": c.num_perm, "pr_records": c.pr_records,
            "dropped_rows": rows, "tagged_turns": tagged, "dropped": dropped[:DROPPED_LISTED],
            "dropped_listed": min(len(dropped), DROPPED_LISTED)}
    nd = cfg.near_duplicates
    if nd.enabled:
        out["near_duplicates"] = {**nd.model_dump(), "skipped": {k: skipped.get(k, 0) for k in CURATION_SKIPS}}
    return out
