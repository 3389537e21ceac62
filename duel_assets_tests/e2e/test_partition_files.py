"""A partition touches only its own files: keys that are prefixes of each other
or end like another key's file kind (`p` / `p__q`, `x` / `x.turns`) never share or clear a file."""
import hashlib
import os
from pathlib import Path

import pytest

from duel_assets.lib.export.paths import partition_files, partition_name, turn_file_name
from duel_assets.lib.settings import ConfigError, Paths
from duel_assets_tests.conftest import materialize

KEYS = ["p", "p__q", "x", "x.turns"]
# written by every partition on purpose: the warehouse, and the index of which prompt file holds each
# history (each turn once per DUEL_HOME)
SHARED = {"warehouse.duckdb", "warehouse.duckdb.lock", "warehouse.duckdb.wal", "history_index.sqlite",
          "history_index.sqlite-wal", "history_index.sqlite-shm", "history_index.sqlite-journal"}


def snapshot(home) -> dict[str, tuple]:
    """Every file the pipeline wrote under DUEL_HOME (the warehouse, the call cache and the Dagster
    instance aside): bytes digest, inode and mtime, so a rewrite with equal bytes still shows."""
    out = {}
    for root, _dirs, files in os.walk(home):
        rel_root = os.path.relpath(root, home)
        if rel_root.split(os.sep)[0] in ("dagster_home", "cache") and rel_root != ".":
            continue
        for f in files:
            rel = os.path.normpath(os.path.join(rel_root, f))
            if rel in SHARED or f.endswith(".lock"):
                continue
            p = os.path.join(root, f)
            st = os.stat(p)
            out[rel] = (hashlib.sha256(open(p, "rb").read()).hexdigest(), st.st_ino, st.st_mtime_ns)
    return out


def test_each_partition_rewrites_only_its_own_files(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + "\n[export]\nrequire_gate = false\n")  # every partition writes shards
    home = duel_env["home"]
    owned: dict[str, set[str]] = {}
    for k in KEYS:
        before = snapshot(home)
        assert materialize(instance, k).success
        after = snapshot(home)
        owned[k] = {f for f in after if f not in before or after[f] != before[f]}
        assert not any(f in before for f in owned[k]), f"{k} rewrote files that existed before it: {owned[k] & set(before)}"
        paths = partition_files(Paths(home), k)
        assert paths.summary.exists() and paths.turns.exists() and paths.manifest.exists() and paths.parquet.exists()
    # x and x.turns: two summaries, two turn details
    assert {"report/partitions/x.json", "report/partitions/x.turns.json", "report/turns/x.json",
            "report/turns/x.turns.json"} <= owned["x"] | owned["x.turns"]
    for k in KEYS:  # re-run every asset that writes files (the LLM step writes none; its calls are cached anyway)
        before = snapshot(home)
        assert materialize(instance, k, selection=["sampled_turns", "pr_records", "duel_verdict", "exported_buckets"]).success
        after = snapshot(home)
        changed = {f for f in set(before) | set(after) if before.get(f) != after.get(f)}
        assert changed and changed <= owned[k], f"re-running {k} changed {sorted(changed - owned[k])}"
        others = {f for j in KEYS if j != k for f in owned[j]}
        assert all(after.get(f) == before[f] for f in others)  # byte for byte, same inode, same mtime


def test_names_come_from_the_exact_key():
    paths = Paths(Path("/h"))
    a, b = partition_files(paths, "x"), partition_files(paths, "x.turns")
    assert len({a.summary, a.turns, a.manifest, a.parquet, a.jsonl, b.summary, b.turns, b.manifest, b.parquet, b.jsonl}) == 10
    assert partition_files(paths, "p").bucket_dir("final") != partition_files(paths, "p__q").bucket_dir("final")
    for bad in ("..", ".", "a/b", "a...b", ""):
        with pytest.raises(ConfigError):
            partition_name(bad)
    # turn ids become distinct file names, also when unsafe characters or length would merge them
    ids = ["a_b", "a b", "a/b", "t" * 200, "t" * 181, "..", "."]
    names = [turn_file_name(t) for t in ids]
    assert len(set(names)) == len(ids) and names[0] == "a_b.json" and all("/" not in n for n in names)
