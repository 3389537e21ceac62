"""Benchmark instance lists (SWE-bench Full / Lite / Verified / Multimodal, SWE-rebench, ...) read like
sources and indexed for matching.

A list is a local JSON / JSON Lines / parquet file (or a folder or glob of them), a hub dataset name
or an ``hf://`` URL (read as parquet row groups, at ``revision`` when one is given). Each row needs an
``instance_id``; ``repo``, ``base_commit``, ``created_at`` (ISO text, or epoch seconds or
milliseconds), the gold ``patch`` and ``problem_statement`` are used when present. What was read is
recorded as the benchmark's version: the files (name, size, and the hub's content hash or the local
modification time), the number of instances and a digest of their ids.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ...settings import BenchmarkSpec, ConfigError, SourceSpec
from ..sources import BadRow, iter_rows, local_stamp, resolve_local
from .diffs import Patch, parse_patch
from .shingles import text_minhash

PROBLEM_SHINGLE = 5  # words per shingle of a problem statement
_ID_REPO = re.compile(r"\A(?P<owner>[A-Za-z0-9_.-]+?)__(?P<name>[A-Za-z0-9_.-]+?)(?:-(?P<pr>\d+)|\.(?P<commit>[0-9a-f]{7,40})\..*)\Z")

if TYPE_CHECKING:  # datasketch (and scipy under it) loads only when curation runs
    from datasketch import MinHash, MinHashLSH


def repo_of_id(instance_id: str) -> str | None:
    """``owner__name-123`` (SWE-bench, SWE-rebench) or ``owner__name.<commit>.<kind>`` (SWE-smith) ->
    ``owner/name``, lower-cased."""
    m = _ID_REPO.match(instance_id or "")
    return f"{m['owner']}/{m['name']}".lower() if m else None


def commit_of_id(instance_id: str) -> str | None:
    m = _ID_REPO.match(instance_id or "")
    return m["commit"] if m and m["commit"] else None


def epoch_seconds(value) -> float | None:
    """A creation time as epoch seconds: ISO text, or a number of seconds or milliseconds (as a number
    or as digits); None when it is none of these."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            value = float(text)
        else:
            try:
                d = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)):
        return float(value) / 1000 if value > 1e11 else float(value)
    return None


def _text(v) -> str:
    return v if isinstance(v, str) else ""


@dataclass
class Instance:
    instance_id: str
    repo: str | None
    base_commit: str | None
    created_at: float | None
    patch: Patch


@dataclass
class Benchmark:
    spec: BenchmarkSpec
    num_perm: int
    threshold: float
    ids: dict[str, str] = field(default_factory=dict)  # lower-cased id -> id
    by_commit: dict[tuple[str, str], list[Instance]] = field(default_factory=dict)  # (repo, commit[:7])
    by_repo: dict[str, list[Instance]] = field(default_factory=dict)
    problems: dict[str, MinHash] = field(default_factory=dict)  # id -> MinHash of its problem statement
    lsh: MinHashLSH | None = None
    version: dict = field(default_factory=dict)
    skipped: int = 0  # rows without an instance_id

    def add(self, row: dict) -> None:
        iid = row.get("instance_id")
        if not isinstance(iid, str) or not iid.strip():
            self.skipped += 1
            return
        repo = (_text(row.get("repo")).strip().lower() or repo_of_id(iid)) or None
        commit = _text(row.get("base_commit")).strip().lower() or None
        inst = Instance(iid, repo, commit, epoch_seconds(row.get("created_at")), parse_patch(_text(row.get("patch"))))
        self.ids[iid.lower()] = iid
        if repo:
            self.by_repo.setdefault(repo, []).append(inst)
            if commit and len(commit) >= 7:
                self.by_commit.setdefault((repo, commit[:7]), []).append(inst)
        statement = _text(row.get("problem_statement"))
        if statement.strip():
            m = text_minhash(statement, self.num_perm, PROBLEM_SHINGLE)
            self.problems[iid] = m
            if self.lsh is None:
                from datasketch import MinHashLSH

                self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
            if iid not in self.lsh:
                self.lsh.insert(iid, m)

    def similar_problem(self, minhash) -> tuple[str, float] | None:
        """The instance whose problem statement is most similar to ``minhash`` at or above the
        threshold (estimated Jaccard), or None."""
        if self.lsh is None:
            return None
        best = None
        for iid in self.lsh.query(minhash):
            j = self.problems[iid].jaccard(minhash)
            if j >= self.threshold and (best is None or j > best[1] or (j == best[1] and iid < best[0])):
                best = (iid, j)
        return best


def _rows(spec: BenchmarkSpec, cache_dir: Path | None):
    files = resolve_local(spec.path)
    if files is not None:
        if not files:
            raise ConfigError(f"decontamination benchmark {spec.name!r}: path {spec.path!r} matched no files")
        stats = [{"file": f.name, "bytes": f.stat().st_size, "modified": int(f.stat().st_mtime)} for f in files]
        return (row for _, row in iter_rows(SourceSpec(format="swe_zero", path=spec.path))), stats
    from ..hub import list_parquet, read_remote_row_group, remote_blocks

    path = f"{spec.path}@{spec.revision}" if spec.revision and "@" not in spec.path else spec.path
    remote = SourceSpec(format="swe_zero", path=path, split=spec.split)
    stats = [{"file": url, "bytes": size, "version": version} for url, size, version in list_parquet(path, spec.split)]
    return (row for b in remote_blocks(remote, cache_dir) for row in read_remote_row_group(b.path, b.index)), stats


def load_benchmark(spec: BenchmarkSpec, num_perm: int, threshold: float, max_instances: int,
                   cache_dir: Path | None = None) -> Benchmark:
    rows, files = _rows(spec, cache_dir)
    bench = Benchmark(spec, num_perm, threshold)
    n = 0
    for row in rows:
        if isinstance(row, BadRow) or not isinstance(row, dict):
            bench.skipped += 1
            continue
        if n >= max_instances:
            raise ConfigError(f"decontamination benchmark {spec.name!r}: more than decontamination.max_instances = "
                              f"{max_instances} rows in {spec.path!r}")
        bench.add(row)
        n += 1
    digest = hashlib.sha256("\n".join(sorted(bench.ids.values())).encode()).hexdigest()[:16]
    bench.version = {"name": spec.name, "path": spec.path, "split": spec.split, "revision": spec.revision,
                     "policy": spec.policy, "instances": len(bench.ids), "ids_sha256": digest, "files": files,
                     "rows_without_id": bench.skipped}
    return bench


@lru_cache(maxsize=8)
def _cached(spec_json: str, num_perm: int, threshold: float, max_instances: int, stamp: tuple,
            cache_dir: str | None) -> Benchmark:
    spec = BenchmarkSpec.model_validate_json(spec_json)
    return load_benchmark(spec, num_perm, threshold, max_instances, Path(cache_dir) if cache_dir else None)


def benchmark(spec: BenchmarkSpec, num_perm: int, threshold: float, max_instances: int,
              cache_dir: Path | None = None) -> Benchmark:
    """:func:`load_benchmark`, read once per process while a local list's files are unchanged."""
    stamp = local_stamp(spec.path) or ()
    return _cached(spec.model_dump_json(), num_perm, threshold, max_instances, stamp, str(cache_dir) if cache_dir else None)
