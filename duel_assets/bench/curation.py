"""Decontamination and near-duplicate control at scale: 1M source rows sampled with and without them.

The input is generated from the bundled SWE-ZERO samples, smaller per row than real rows (the
system prompt is cut to its first 300 characters and each trajectory to its first three steps):
instances of 100 runs each (10,000 at 1M rows), every instance with a task of its own and every run
with its own temporary paths, times and noise in its observations, written as one JSON Lines file.
The benchmark lists are generated too: two of 2,294 instances (SWE-bench's size) in the samples'
repositories and others, with base commits, dates, gold patches and problem statements, one
``drop`` and one ``tag``; half of each list's instances are source instances by id (about a tenth
of the source's), the rest share their repositories, so a row that matches no instance by id is
checked in every way, problem statement included.

Both sides run the sampler's own path for a large local source, block by block (256 lines): read the
block, shuffle it, cut one turn per trajectory, and take its turns into a window (one window per
block, every turn taken, so that every row is sampled). The measured side adds what
``[decontamination]`` and ``[near_duplicates]`` add: the rows checked against both lists (with PR
records looked up for the lists' repositories), each block reduced to one turn per near-duplicate
cluster, each turn checked against the near-duplicate index of a ``DUEL_HOME`` and recorded in it
after its window. The two sides alternate block by block, so that a change in the machine's load
falls on both; the history index and writing prompt files, the same on both sides, are left out
(they would only add to both times).
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

from duel_assets.lib.sampling.curation.window import CURATION_SKIPS

CURATION_ROWS = 1_000_000
RUNS = 100  # runs (source rows) per instance: 1M rows are 10,000 instances
BENCH_INSTANCES = 2294
_WORDS = ("cache index token parser config loader retry socket buffer schema thread queue render widget stream "
          "encode decode timeout handler session cursor batch commit branch merge signal filter column vector "
          "matrix shard replica lease bucket window metric gauge trace span probe plugin module").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def make_rows(path: Path, rows: int) -> tuple[list[str], int]:
    """The source file; returns the repositories of the instances and the bytes written."""
    from duel_assets.lib.sampling.sources import bundled_path

    base = [json.loads(line) for line in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    per = RUNS
    repos = sorted({r["repo"] for r in base}) + [f"org{i}/proj{i}" for i in range(40)]
    with open(path, "w") as fh:
        for n in range(rows):
            inst = n // per
            rng = random.Random(inst)
            r = base[inst % len(base)]
            repo = repos[inst % len(repos)]
            msgs = [dict(m) for m in r["messages"][:8]]
            msgs[0]["content"] = msgs[0]["content"][:300]
            msgs[1]["content"] = (f"Please solve this issue in the repository {repo}.\n\n## Issue\n\n{_text(rng, 60)}\n\n"
                                  f"## Repository Info\n\n- Repo: {repo}\n- Base commit: {rng.getrandbits(160):040x}")
            run = random.Random(n)
            for m in msgs[3::2]:
                m["content"] += f"\n/tmp/tmp{run.getrandbits(32):08x} {run.randrange(24):02d}:{run.randrange(60):02d} {_text(run, 6)}"
            fh.write(json.dumps({"instance_id": f"{repo.replace('/', '__')}-{inst}", "repo": repo, "messages": msgs,
                                 "exit_status": "Submitted"}) + "\n")
    return repos, path.stat().st_size


def make_benchmark(path: Path, repos: list[str], rows: int, seed: int, size: int = BENCH_INSTANCES) -> None:
    """A benchmark list: half its instances are source instances (by id), the rest others in the same repositories."""
    rng = random.Random(seed)
    per = RUNS
    with open(path, "w") as fh:
        for i in range(size):
            inst = rng.randrange(max(1, rows // per))
            repo = repos[inst % len(repos)]
            iid = f"{repo.replace('/', '__')}-{inst}" if i % 2 == 0 else f"{repo.replace('/', '__')}-b{i}"
            patch = (f"diff --git a/src/m{i % 50}.py b/src/m{i % 50}.py\n--- a/src/m{i % 50}.py\n+++ b/src/m{i % 50}.py\n"
                     f"@@ -{10 + i % 90},4 +{10 + i % 90},5 @@\n x\n-y\n+z\n+w\n")
            fh.write(json.dumps({"instance_id": iid, "repo": repo, "base_commit": f"{rng.getrandbits(160):040x}",
                                 "created_at": 1_600_000_000_000 + i * 86_400_000, "patch": patch,
                                 "problem_statement": _text(rng, 80)}) + "\n")


class _Side:
    """One configuration's sampling of every block, timed."""

    def __init__(self, cfg, spec, home: Path | None):
        from duel_assets.lib.sampling.cutter import Cutter, Pool

        self.cfg, self.home = cfg, home
        self.pool = Pool(turns=[])
        self.cut = Cutter(spec, cfg, self.pool)
        self.seconds, self.cpu, self.turns, self.tagged = 0.0, 0.0, 0, 0
        self.skipped: Counter = Counter()

    def block(self, block, seed: str) -> None:
        from duel_assets.lib.sampling.blocks import block_rows, load_local_block
        from duel_assets.lib.sampling.curation.window import Curation, Taker

        t0, c0 = time.perf_counter(), time.process_time()
        rows = block_rows(block, load_local_block(block))
        random.Random(seed).shuffle(rows)
        cur = Curation(self.cfg, f"bench_{block.index}", self.home)
        take = Taker(10**12, None, cur, self.pool.sources)
        clusters = cur.clusters()
        batches = self.cut.turns(rows, 1)
        for turns in (batches if clusters is None else [clusters.keep([t for ts in batches for t in ts])]):
            take.offer(turns)
        cur.commit()
        self.seconds += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        self.turns += len(take.chosen)
        self.tagged += sum(1 for t in take.chosen if t.contamination)
        self.skipped.update(take.skipped)
        if clusters is not None:
            self.skipped.update(clusters.skipped)


def bench_curation(tmp: Path, rows: int = CURATION_ROWS, bench_instances: int = BENCH_INSTANCES) -> dict:
    from duel_assets.lib.sampling.blocks import blocks_for
    from duel_assets.lib.settings import SourceSpec, parse_config

    src, drop, tag = tmp / "rows.jsonl", tmp / "benchmark_drop.jsonl", tmp / "benchmark_tag.jsonl"
    t0 = time.perf_counter()
    repos, size = make_rows(src, rows)
    make_benchmark(drop, repos, rows, 7, bench_instances)
    make_benchmark(tag, repos, rows, 8, bench_instances)
    made = time.perf_counter() - t0
    spec = SourceSpec(format="swe_zero", path=str(src))
    base = {"sources": [spec.model_dump()], "sampling": {"seed": 0}}
    plain = parse_config(base)
    curated = parse_config({**base, "near_duplicates": {"enabled": True},
                            "decontamination": {"benchmarks": [{"name": "synthetic-verified", "path": str(drop), "policy": "drop"},
                                                               {"name": "synthetic-lite", "path": str(tag), "policy": "tag"}]}})
    blocks = blocks_for([src], 256, tmp / "line_index")
    sides = {"plain": _Side(plain, spec, None), "curated": _Side(curated, spec, tmp / "home")}
    for b in blocks:
        for side in sides.values():
            side.block(b, f"0:{b.index}")
    p, c = sides["plain"], sides["curated"]
    skipped = c.pool.skipped + c.skipped
    return {"curation_rows": rows, "curation_file_bytes": size, "curation_blocks": len(blocks), "curation_input_seconds": round(made, 1),
            "curation_plain_seconds": round(p.seconds, 1), "curation_seconds": round(c.seconds, 1),
            "curation_plain_turns": p.turns, "curation_turns": c.turns,
            "curation_contaminated_rows": sum(n for k, n in skipped.items() if k.startswith("contaminated:")),
            "curation_near_duplicates": {k: skipped.get(k, 0) for k in CURATION_SKIPS},
            "curation_tagged_turns": c.tagged,
            "curation_plain_cpu_seconds": round(p.cpu, 1), "curation_cpu_seconds": round(c.cpu, 1),
            "decontam_time_ratio": round(c.seconds / p.seconds, 3), "decontam_cpu_ratio": round(c.cpu / p.cpu, 3)}
