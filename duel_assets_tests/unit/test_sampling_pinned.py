"""What a seed samples is pinned: the turns each key gets from fixed files under fixed seeds.

Sampling is deterministic per key and seed, and a prompt file already written is never sampled
again, so a change to what a seed picks (a new read path, another order of rows or blocks, another
rule for cutting) would quietly give a ``DUEL_HOME`` turns that differ from the ones its sibling
files were sampled with. The pinned record (``fixtures/sampled_turns_pinned.json``) holds, for
every case and key, the turn ids and a digest of the whole prompt file (histories, references,
provenance, counts and the window's own figures, less its creation time and the parquet files'
compressed sizes, which depend on the writer's version). Sources are named by relative paths from
the test's folder, so nothing depends on where the test runs.

Re-record (``python -m duel_assets_tests.unit.test_sampling_pinned``) only for a deliberate change of
what seeds sample, and say so in the change.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from duel_assets.lib.sampling.sampler import sample_for_key
from duel_assets.lib.sampling.sources import bundled_path
from duel_assets.lib.settings import parse_config
from duel_assets_tests.conftest import FIXTURES

PINNED = FIXTURES / "sampled_turns_pinned.json"

# (case, source, sampling, filters, keys); every source is block-sampled unless its case says pool
CASES = [
    ("parquet_blocks", "traj.parquet", {"seed": 5}, {}, ["prompts_60_000", "prompts_60_001", "prompts_60_002", "a-key"]),
    ("parquet_two_per_trajectory_where", "traj.parquet", {"seed": 9, "turns_per_trajectory": 2, "turns_per_file": 30},
     {"where": "exit_status = 'Submitted'"}, ["prompts_90_000", "prompts_90_002", "other-key"]),
    ("parquet_trimmed", "traj.parquet", {"seed": 1, "max_history_chars": 1500, "max_observation_chars": 100},
     {}, ["prompts_40_000", "prompts_40_001"]),
    ("jsonl_blocks", "traj.jsonl", {"seed": 5, "jsonl_block_lines": 8}, {}, ["prompts_40_000", "prompts_40_001", "b-key"]),
    ("pool", "traj.parquet", {"seed": 3, "block_mode_min_bytes": 1 << 40}, {}, ["prompts_40_000", "prompts_40_001", "c-key"]),
]


def _rows(variants: int) -> list[dict]:
    base = [json.loads(line) for line in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    out = []
    for v in range(variants):
        for r in base:
            msgs = [dict(m) for m in r["messages"]]
            msgs[1]["content"] += f"\n- Variant: {v}"
            out.append({**r, "messages": msgs})
    return out


def write_sources(folder: Path) -> None:
    pq.write_table(pa.Table.from_pylist(_rows(8)), folder / "traj.parquet", row_group_size=8)  # 16 row groups
    (folder / "traj.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(4)))


def _digest(payload: dict) -> str:
    doc = {k: v for k, v in payload.items() if k != "created_at"}
    doc["sources"] = [{k: v for k, v in s.items() if k != "block_bytes"} for s in payload["sources"]]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def sample_all(folder: Path) -> dict:
    """Every case's prompt files, sampled from the sources in ``folder`` (the working directory)."""
    out: dict = {}
    for case, source, sampling, filters, keys in CASES:
        cfg = parse_config({"sources": [{"format": "swe_zero", "path": source}],
                            "sampling": {"turns_per_file": 20, "block_mode_min_bytes": 1, **sampling}, "filters": filters})
        pools: dict = {}
        for key in keys:
            p = sample_for_key(key, cfg, pools=pools, cache_dir=folder / "cache")
            out[f"{case}/{key}"] = {"turn_ids": [t["turn_id"] for t in p["turns"]], "digest": _digest(p)}
    return out


@pytest.mark.skipif(not PINNED.exists(), reason="the pinned record is missing (record it: python -m duel_assets_tests.unit.test_sampling_pinned)")
def test_seeds_sample_the_pinned_turns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sources(tmp_path)
    got = sample_all(tmp_path)
    pinned = json.loads(PINNED.read_text())
    assert sorted(got) == sorted(pinned)
    for name, want in pinned.items():
        assert got[name]["turn_ids"] == want["turn_ids"], name
        assert got[name]["digest"] == want["digest"], name
    assert sum(len(v["turn_ids"]) for v in got.values()) >= 300  # every case delivered turns


def record() -> None:
    with tempfile.TemporaryDirectory() as d:
        here = os.getcwd()
        os.chdir(d)
        try:
            write_sources(Path(d))
            PINNED.write_text(json.dumps(sample_all(Path(d)), indent=1, sort_keys=True) + "\n")
        finally:
            os.chdir(here)
    print(f"recorded {PINNED}", file=sys.stderr)


if __name__ == "__main__":
    record()
