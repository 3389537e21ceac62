"""Which benchmark instance a trajectory (or a turn) matches, and how.

A turn matches a benchmark instance by, in order of strength (``MATCH_WAYS``):

1. ``instance_id``: the same instance id (case-insensitive: SWE-rebench lower-cases them);
2. ``repo_commit``: the same repository and base commit (a short commit, as SWE-smith ids carry,
   matches the full one it starts);
3. ``repo_window``: the same repository and a PR created within ``window_days`` of the instance's;
4. ``patch_overlap``: the same repository, and the turn's hidden patch and the instance's gold patch
   change a file in common in intersecting hunks (:mod:`.diffs`);
5. ``problem_statement``: the task's problem statement is a near-duplicate of the instance's
   (MinHash of word 5-shingles, estimated Jaccard >= ``problem_threshold``).

What a turn is known by: its ``instance_id`` and ``repo`` (else the repository its id names); its
base commit from the row (``source_meta`` / the row's hidden record), the task's ``Base commit:``
line, the commit of a SWE-smith id, else its PR record; its PR's creation time and patch from the
row's hidden record, else its PR record; its problem statement from the task (the whole first user
message, and the issue inside it when the task wraps one) and from its PR record. PR records are
looked up in ``[[pr_records]]`` (or the bundled records) only for turns of a repository some
benchmark holds, and only when ``pr_records = true``.

Per benchmark the strongest way is kept; a turn matching several benchmarks has one match each.
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...settings import MATCH_WAYS, ChainConfig
from ..sources import local_stamp
from .benchmarks import PROBLEM_SHINGLE, Benchmark, benchmark, commit_of_id, epoch_seconds, repo_of_id
from .diffs import Patch, overlap, parse_patch
from .shingles import text_minhash

_BASE_COMMIT = re.compile(r"[Bb]ase[ _]commit\W{0,4}([0-9a-fA-F]{7,40})\b")
_WRAPPED = re.compile(r"<(pr_description|github_issue|issue_description|issue)>(.*?)</\1>", re.S)
_ISSUE_SECTION = re.compile(r"^#+ *(?:Issue|Problem statement)\s*$(.*?)(?=^#+ |\Z)", re.S | re.M | re.I)
CACHE = 100_000  # verdicts and problem signatures kept per process
ROWS_CACHE = 4096  # rows' matches kept by what their facts come from (runs of an instance share it all)
_FROM_META = ("base_commit", "created_at")
_FROM_HIDDEN = ("base_commit", "created_at", "patch", "target_patch", "problem_statement")


@dataclass(frozen=True)
class Match:
    benchmark: str
    way: str
    instance: str  # the benchmark's instance it matched
    policy: str

    @property
    def label(self) -> str:
        return f"{self.benchmark}:{self.way}"


@dataclass
class Facts:
    instance_id: str
    repo: str | None
    base_commit: str | None
    created_at: float | None
    patch: Patch
    statements: tuple[str, ...]


def task_text(messages: list[dict]) -> str:
    """The first user message: the task."""
    return next((m.get("content") or "" for m in messages if m.get("role") == "user"), "") or ""


def statements_of(task: str, record_statement: str | None) -> tuple[str, ...]:
    """The problem statements a task shows: the PR record's, the issue the task wraps, the task itself."""
    return tuple(dict.fromkeys(s.strip() for s in (record_statement or "", *_task_parts(task)[1]) if s and s.strip()))


@lru_cache(maxsize=1024)
def _task_parts(task: str) -> tuple[str | None, tuple[str, str, str]]:
    """What a task says once for all its rows (runs of an instance share it): the commit of its
    ``Base commit:`` line, and the issue it wraps, its issue section and itself."""
    found = _BASE_COMMIT.search(task)
    wrapped = _WRAPPED.search(task)
    section = _ISSUE_SECTION.search(task)
    return (found.group(1) if found else None,
            (wrapped.group(2) if wrapped else "", section.group(1) if section else "", task))


class _LRU(OrderedDict):
    def __init__(self, size: int = CACHE):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class Decontaminator:
    """The configured benchmarks, read once, and the matching of trajectories and turns against them."""

    def __init__(self, cfg: ChainConfig, cache_dir: Path | None = None):
        d = cfg.decontamination
        self.cfg = d
        self.benchmarks: list[Benchmark] = [benchmark(s, d.num_perm, d.problem_threshold, d.max_instances, cache_dir)
                                            for s in d.benchmarks]
        self.ways = [w for w in MATCH_WAYS if w in d.ways]
        self.window_s = d.window_days * 86400.0
        self.repos = {r for b in self.benchmarks for r in b.by_repo}
        self.pr_specs = (cfg.pr_records.specs or None) if d.pr_records else None
        self.use_records = d.pr_records
        self.records: _LRU = _LRU()  # instance id -> PR record fields (or {} when none)
        self._verdicts: _LRU = _LRU()
        self._problems: _LRU = _LRU()
        self._rows: _LRU = _LRU(ROWS_CACHE)  # what a row's facts come from -> its matches

    @property
    def active(self) -> bool:
        return bool(self.benchmarks)

    def versions(self) -> list[dict]:
        return [b.version for b in self.benchmarks]

    # ------------------------------------------------------------ facts

    def _repo(self, instance_id: str, repo: str | None) -> str | None:
        return (repo or "").strip().lower() or repo_of_id(instance_id)

    def prefetch(self, items: list[tuple[str, str | None]]) -> None:
        """Look up, in one query per source, the PR records of these (instance id, repo) that a
        check will need and that are not known yet."""
        if not self.use_records:
            return
        want = sorted({i for i, r in items if i and i not in self.records and self._repo(i, r) in self.repos})
        if want:
            from .pr_lookup import lookup_records  # DuckDB and pandas only when PR records are looked up

            found = lookup_records(self.pr_specs, want)
            for i in want:
                self.records.put(i, found.get(i, {}))

    def facts(self, instance_id: str, repo: str | None, messages: list[dict], source_meta: dict | None,
              hidden: dict | None) -> Facts:
        meta, hidden = source_meta or {}, hidden or {}
        repo = self._repo(instance_id, repo)
        if self.use_records and repo in self.repos and instance_id not in self.records:
            self.prefetch([(instance_id, repo)])
        rec = self.records.get(instance_id) or {}
        task = task_text(messages)
        commit = (meta.get("base_commit") or hidden.get("base_commit") or _task_parts(task)[0]
                  or commit_of_id(instance_id) or rec.get("base_commit"))
        created = epoch_seconds(meta.get("created_at") or hidden.get("created_at") or rec.get("created_at"))
        patch_text = hidden.get("patch") or hidden.get("target_patch") or rec.get("patch") or ""
        statement = hidden.get("problem_statement") or rec.get("problem_statement")
        return Facts(instance_id, repo, str(commit).lower() if commit else None, created,
                     _patch(patch_text), statements_of(task, statement))

    # ------------------------------------------------------------ matching

    def _problem(self, text: str):
        key = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
        got = self._problems.get(key)
        if got is None:
            got = self._problems.put(key, text_minhash(text, self.cfg.num_perm, PROBLEM_SHINGLE))
        return got

    def _way(self, way: str, b: Benchmark, f: Facts) -> str | None:
        """The benchmark instance ``f`` matches in this way, or None."""
        if way == "instance_id":
            return b.ids.get(f.instance_id.lower())
        if way == "problem_statement":
            hits = [h for s in f.statements if (h := b.similar_problem(self._problem(s)))]
            return max(hits, key=lambda h: (h[1], h[0]))[0] if hits else None
        insts = b.by_repo.get(f.repo or "")
        if not insts:
            return None
        if way == "repo_commit" and f.base_commit and len(f.base_commit) >= 7:
            for inst in b.by_commit.get((f.repo or "", f.base_commit[:7]), []):
                c = inst.base_commit or ""
                if c.startswith(f.base_commit) or f.base_commit.startswith(c):
                    return inst.instance_id
        if way == "repo_window" and f.created_at is not None:
            at = f.created_at
            near = [(abs(i.created_at - at), i.instance_id) for i in insts
                    if i.created_at is not None and abs(i.created_at - at) <= self.window_s]
            return min(near)[1] if near else None
        if way == "patch_overlap" and f.patch:
            return next((i.instance_id for i in insts if overlap(i.patch, f.patch)), None)
        return None

    def match(self, f: Facts) -> tuple[Match, ...]:
        """One match per benchmark the facts match (its strongest way), strongest first."""
        key = (f.instance_id, f.repo, f.base_commit, f.created_at, f.patch.files, hash(frozenset(f.patch.hunks.items())),
               hashlib.sha1("\0".join(f.statements).encode("utf-8", "surrogatepass")).digest())
        cached = self._verdicts.get(key)
        if cached is not None:
            return cached
        out = []
        for b in self.benchmarks:
            for way in self.ways:
                inst = self._way(way, b, f)
                if inst is not None:
                    out.append(Match(b.spec.name, way, inst, b.spec.policy))
                    break
        out.sort(key=lambda m: MATCH_WAYS.index(m.way))  # stable: config order within a way
        return self._verdicts.put(key, tuple(out))

    def check(self, instance_id: str, repo: str | None, messages: list[dict], source_meta: dict | None = None,
              hidden: dict | None = None) -> tuple[Match, ...]:
        """The matches of a row: :meth:`match` of its :meth:`facts`, looked up by everything they are
        read from when a row with the same was checked before (its PR record is the same: an
        instance id's record is looked up once)."""
        meta, extra = source_meta or {}, hidden or {}
        key = (instance_id, repo, task_text(messages), *map(_keyed, (*(meta.get(k) for k in _FROM_META),
                                                                     *(extra.get(k) for k in _FROM_HIDDEN))))
        try:
            got = self._rows.get(key)
        except TypeError:  # a field that is not hashable: no shortcut
            return self.match(self.facts(instance_id, repo, messages, source_meta, hidden))
        if got is None:
            got = self._rows.put(key, self.match(self.facts(instance_id, repo, messages, source_meta, hidden)))
        return got


def _keyed(value):
    """A value as part of a cache key: with its type unless text or None (``1``, ``1.0`` and ``True``
    are equal keys but not the same facts)."""
    return value if value is None or type(value) is str else (type(value).__name__, value)


@dataclass(frozen=True)
class Decision:
    excluded_reason: str | None  # contaminated:<benchmark>:<way> when a drop benchmark matched
    tags: tuple[str, ...]  # <benchmark>:<way> of every matching benchmark whose policy is tag


def decide(matches: tuple[Match, ...]) -> Decision:
    """The strongest match of a ``drop`` benchmark excludes; every ``tag`` match is recorded."""
    drop = next((m for m in matches if m.policy == "drop"), None)
    return Decision(f"contaminated:{drop.label}" if drop else None, tuple(m.label for m in matches if m.policy == "tag"))


_PATCHES: _LRU = _LRU()


def _patch(text: str) -> Patch:
    if not text:
        return Patch(frozenset(), {})
    key = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
    got = _PATCHES.get(key)
    return got if got is not None else _PATCHES.put(key, parse_patch(text))


_SHARED: dict[str, Decontaminator] = {}


def decontaminator(cfg: ChainConfig, cache_dir: Path | None = None) -> Decontaminator | None:
    """The process's decontaminator for this configuration (None when no benchmark is configured)."""
    if not cfg.decontamination.benchmarks:
        return None
    stamps: list[tuple[str, int, int]] = []
    for spec in cfg.decontamination.benchmarks:
        stamps += local_stamp(spec.path) or ()
    key = cfg.decontamination.model_dump_json() + "|" + cfg.pr_records.model_dump_json() + "|" + repr(stamps)
    if key not in _SHARED:
        if len(_SHARED) > 4:
            _SHARED.clear()
        _SHARED[key] = Decontaminator(cfg, cache_dir)
    return _SHARED[key]
