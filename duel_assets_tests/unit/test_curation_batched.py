"""The batched computations of decontamination and near-duplicate control give what the plain,
one-at-a-time ones give, on random inputs: MinHash values (datasketch's own ``update_batch``),
signatures, the clusters kept, and the problem statements and commit a task shows."""
from __future__ import annotations

import hashlib
import random
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest

from duel_assets.lib.sampling.curation import decontaminate, linking, near_dup, shingles
from duel_assets.lib.sampling.curation.near_dup import Clusters, signatures
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers.mini_swe_agent import read_swe_zero
from duel_assets.lib.settings import NearDuplicatesConfig

WORDS = "ls grep sed cat src index.py /tmp/tmpab12cd34 2024-01-02 10:11:12 deadbeef1 fix cache rename error test".split()


def _datasketch(hashes: list[int], num_perm: int) -> np.ndarray:
    """datasketch's own MinHash values of a set of 32-bit hashes (``update_batch``, seed 1, ``affine32``)."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=1, scheme="affine32", hashfunc=lambda x: x)
    if hashes:
        m.update_batch(hashes)
    return m.hashvalues


def _as_datasketch(values: np.ndarray, num_perm: int):
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=1, scheme="affine32", hashvalues=values.copy())


def _sets(rng: random.Random) -> list[np.ndarray]:
    sizes = [rng.choice([0, 1, 2, 7, 60, 400, 3000]) for _ in range(rng.randrange(0, 25))]
    return [np.unique(np.array([rng.getrandbits(32) for _ in range(n)], dtype=np.uint32)) for n in sizes]


@pytest.mark.parametrize("seed", range(12))
def test_minhash_values_are_datasketchs_update_batch(seed, monkeypatch):
    rng = random.Random(seed)
    num_perm = rng.choice([16, 64, 128])
    monkeypatch.setattr(shingles, "_BATCH_CELLS", rng.choice([1, 50, 1 << 22]) * num_perm)  # groups of every size
    sets = _sets(rng)
    got = shingles.minhash_values(sets, num_perm)
    assert got.shape == (len(sets), num_perm) and got.dtype == np.uint32
    for row, s in zip(got, sets):
        assert np.array_equal(row, _datasketch(s.tolist(), num_perm))
        one = shingles.minhash(s, num_perm)  # a single set's MinHash, as problem statements get it
        assert np.array_equal(one.hashvalues, row) and one.jaccard(_as_datasketch(row, num_perm)) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_joined_parts_hash_as_the_joined_text(seed, monkeypatch):
    """Word hashes kept per part give the MinHash of the parts joined, whatever the parts hold
    (temporary paths, hex ids, a final sigma, fewer words than a shingle, nothing)."""
    rng = random.Random(seed)
    words = [*WORDS, "ΑΣ", "/var/tmp/x", "C:\\Users\\a\\Temp\\b", "zztmpzz", "a-b:c"]
    for _ in range(40):
        num_perm, n = rng.choice([16, 64]), rng.choice([1, 2, 3, 5])
        monkeypatch.setattr(shingles, "_BATCH_CELLS", rng.choice([1, 50, 1 << 22]) * num_perm)
        docs = [[" ".join(rng.choice(words) for _ in range(rng.choice([0, 1, 2, 3, 6, 40]))) for _ in range(rng.randrange(0, 4))]
                for _ in range(rng.randrange(0, 12))]
        got = shingles.joined_minhash_values(docs, num_perm, n)
        assert got.shape == (len(docs), num_perm)
        for row, parts in zip(got, docs):
            assert np.array_equal(row, _datasketch(shingles.shingle_hashes(" \n ".join(parts), n), num_perm))


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _row(rng: random.Random, task: int, variant: int) -> dict:
    """A run of one of a few tasks; runs of one task share most steps, so near-duplicates abound."""
    steps = random.Random(task * 100 + variant % 3)
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Task {task}: {_text(random.Random(task), 40)}"}]
    for _ in range(rng.randrange(1, 5)):
        cmd = f"{steps.choice(WORDS)} {steps.choice(WORDS)}"
        msgs += [{"role": "assistant", "content": f"THOUGHT: look.\n\n```bash\n{cmd}\n```\n"},
                 {"role": "user", "content": f"{_text(steps, 30)} {_text(rng, rng.choice([0, 2, 30]))}"}]
    msgs.append({"role": "assistant", "content": "THOUGHT: done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```\n"})
    return {"instance_id": f"acme__x-{task}", "repo": "acme/x", "messages": msgs, "exit_status": "Submitted"}


def _turns(seed: int) -> list:
    rng = random.Random(seed)
    return [t for i in range(rng.randrange(5, 40))
            for t in cut_turns(read_swe_zero(_row(rng, rng.randrange(4), i)))[0]]


def _old_band_keys(s, b: int, r: int) -> list[int]:
    task, steps = s.task.hashvalues.astype(np.uint32), s.steps.hashvalues.astype(np.uint32)
    return [int.from_bytes(hashlib.blake2b(bytes([i]) + task[i * r:(i + 1) * r].tobytes() + steps[i * r:(i + 1) * r].tobytes(),
                                           digest_size=8).digest(), "big") >> 1 for i in range(b)]


def _old_keep(turns, cfg: NearDuplicatesConfig) -> list:
    """Clusters.keep of a fresh Clusters the plain way: one signature at a time (datasketch's
    MinHash of each text), every candidate pair checked."""
    sigs = []
    for t in turns:
        task = next((m.get("content") or "" for m in t.history if m.get("role") == "user"), "")
        steps = " \n ".join(near_dup._text(m) for m in [*near_dup.recent_steps(t.history, cfg.last_steps), t.reference])
        sigs.append(near_dup.Signature(t.history_hash,
                                       _datasketch(shingles.shingle_hashes(task[: 4 * near_dup.MESSAGE_CHARS]), cfg.num_perm),
                                       _datasketch(shingles.shingle_hashes(steps), cfg.num_perm)))
    nb, nr = near_dup.band_params(cfg.threshold, cfg.num_perm)
    bands: dict[int, list[int]] = {}  # band key (BLAKE2b) -> turns
    parent = {i: i for i in range(len(sigs))}
    for i in range(len(sigs)):
        for j in {j for k in _old_band_keys(sigs[i], nb, nr) for j in bands.get(k, ())}:
            if sigs[i].near(sigs[j], cfg.threshold):
                a, b = linking.root(parent, i), linking.root(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        for k in _old_band_keys(sigs[i], nb, nr):
            bands.setdefault(k, []).append(i)
    best: dict[int, int] = {}
    for i in range(len(sigs)):
        r = linking.root(parent, i)
        if r not in best or sigs[i].key < sigs[best[r]].key:
            best[r] = i
    return [sigs, [turns[i] for i in sorted(best.values())]]


@pytest.mark.parametrize("seed", range(10))
def test_batched_signatures_and_clusters_are_the_one_at_a_time_ones(seed, monkeypatch):
    # a band's pairs checked at once or a few at a time, alone or with the other small bands'
    monkeypatch.setattr(linking, "PAIRS", [1, 7, 1 << 20][seed % 3])
    monkeypatch.setattr(linking, "SMALL", [1, 2, 8][seed // 3 % 3])
    monkeypatch.setattr(linking, "CELLS", [1, 50, 1 << 22][seed % 2])
    monkeypatch.setattr(linking, "PROPAGATIONS", [0, 8][seed // 2 % 2])  # clusters joined by scipy's search, or by label passes
    cfg = NearDuplicatesConfig(enabled=True, threshold=random.Random(seed).choice([0.5, 0.8, 0.9]),
                               last_steps=random.Random(seed).choice([1, 2]))
    turns = _turns(seed)
    old_sigs, old_kept = _old_keep(turns, cfg)
    new_sigs = signatures(turns, cfg)
    bands = near_dup.band_params(cfg.threshold, cfg.num_perm)
    for a, b in zip(old_sigs, new_sigs):
        assert a.key == b.key and np.array_equal(a.task_values, b.task_values) and np.array_equal(a.steps_values, b.steps_values)
        assert a.bands(*bands) == b.bands(*bands) == _old_band_keys(a, *bands) and a.to_bytes() == b.to_bytes()
    kept = Clusters(cfg).keep(turns)
    assert [t.turn_id for t in kept] == [t.turn_id for t in old_kept]
    assert len(kept) < len(turns) or len(turns) < 2  # the inputs do hold near-duplicates


@pytest.mark.parametrize("num_perm,threshold", [(16, 0.5), (64, 0.8), (128, 0.9), (256, 0.7), (1024, 0.35)])
def test_band_keys_computed_at_once_are_those_of_each_signature(num_perm, threshold):
    rng = np.random.default_rng(num_perm)
    b, r = near_dup.band_params(threshold, num_perm)
    assert (b > 256) == (num_perm == 1024)  # past 256 bands a band's number takes two bytes
    sigs = [near_dup.Signature(f"h{i}", rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32),
                               rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)) for i in range(7)]
    one = [near_dup.Signature(s.key, s.task_values, s.steps_values) for s in sigs]
    sigs[2].keys = [1, 2, 3]  # keys known already are kept
    near_dup.with_band_keys(sigs, b, r)
    assert sigs[2].keys == [1, 2, 3]
    for i, (s, o) in enumerate(zip(sigs, one)):
        if i != 2:
            assert s.keys == o.bands(b, r) and len(set(s.keys)) == b
            if b <= 256:
                assert s.keys == _old_band_keys(o, b, r)  # the keys an index holds already


_BASE_COMMIT = re.compile(r"[Bb]ase[ _]commit\W{0,4}([0-9a-fA-F]{7,40})\b")


def _old_statements(task: str, record: str | None) -> tuple[str, ...]:
    out = [record or ""]
    wrapped = decontaminate._WRAPPED.search(task)
    section = decontaminate._ISSUE_SECTION.search(task)
    out += [wrapped.group(2) if wrapped else "", section.group(1) if section else "", task]
    return tuple(dict.fromkeys(s.strip() for s in out if s and s.strip()))


@pytest.mark.parametrize("seed", range(5))
def test_what_a_task_shows_is_read_as_before(seed):
    rng = random.Random(seed)
    parts = ["<pr_description>\n{}\n</pr_description>", "## Issue\n\n{}\n", "## Problem statement\n{}\n## Other\n",
             "Base commit: {:040x}", "base_commit = {:07x}", "{}", "<issue>{}</issue>"]
    for _ in range(200):
        task = "\n".join(p.format(rng.getrandbits(160) if "x}" in p else _text(rng, rng.randrange(0, 12)))
                         for p in rng.sample(parts, rng.randrange(0, len(parts))))
        record = rng.choice([None, "", _text(rng, 8), task.strip()])
        assert decontaminate.statements_of(task, record) == _old_statements(task, record)
        found = _BASE_COMMIT.search(task)
        assert decontaminate._task_parts(task)[0] == (found.group(1) if found else None)


class _Turn:
    def __init__(self, h: str, instance: str, repo: str):
        self.history_hash, self.instance_id, self.repo = h, instance, repo


@pytest.mark.parametrize("unique", [False, True], ids=["index", "index-with-unique-hashes"])
@pytest.mark.parametrize("seed", range(4))
def test_the_index_in_levels_answers_as_one_table_would(seed, unique, tmp_path, monkeypatch):
    """Random claims (some again by a prompt file that holds entries: they replace them) and releases,
    with small levels so that rows move between them: candidates and counts are those of a plain
    model of the index. An index file written with a unique index on the hashes answers the same."""
    from duel_assets.lib.sampling.curation import near_dup_index

    monkeypatch.setattr(near_dup_index, "LEVELS", (("bands_recent", 12), ("bands_middle", 50), ("bands", None)))
    rng = random.Random(seed)
    index = near_dup_index.NearDupIndex(tmp_path)
    if unique:  # the schema an index file had before: the same, with a unique index on the hashes
        with sqlite3.connect(index.path) as con:
            con.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, prompt_file TEXT NOT NULL, "
                        "instance_id TEXT, repo TEXT, num_perm INTEGER, sig BLOB, bands BLOB)")
        con.close()
    held: dict[str, tuple[str, str, list[int]]] = {}  # hash -> (prompt file, instance, band keys): the model
    pool = [rng.getrandbits(62) for _ in range(120)]  # band keys, few enough to be shared
    filled: set[str] = set()  # the levels that held rows after some claim
    for step in range(60):
        key = f"file{rng.randrange(8)}"
        if rng.random() < 0.15:
            keep = {h for h, (k, _, _) in held.items() if k == key and rng.random() < 0.5}
            gone = [h for h, (k, _, _) in held.items() if k == key and h not in keep]
            assert index.release(key, keep) == len(gone)
            for h in gone:
                del held[h]
            continue
        # the history index hands a history to one prompt file: a claim holds its own or new hashes
        own = [h for h, (k, _, _) in held.items() if k == key]
        entries = {}
        for _ in range(rng.randrange(1, 12)):
            h = rng.choice([*own, *(f"h{step}_{i}" for i in range(20))])
            values = np.array([rng.getrandbits(32) for _ in range(32)], dtype=np.uint32)
            entries[h] = (_Turn(h, f"i{rng.randrange(5)}", "acme/x"),
                          near_dup.Signature(h, values[:16], values[16:], keys=rng.sample(pool, 3)))
        index.claim(key, list(entries.values()), 3, 5)
        filled |= {t for t, _ in near_dup_index.LEVELS if index._connect().execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()}
        held = {h: v for h, v in held.items() if v[0] != key}
        held.update({h: (key, t.instance_id, s.keys) for h, (t, s) in entries.items()})
        asked = rng.sample(pool, 10)
        asked += asked[:2]  # a key asked twice is answered once
        other = f"file{rng.randrange(8)}"
        by_band, found = index.candidates(other, asked)
        want: dict[int, set[str]] = {}
        for h, (k, _, keys) in held.items():
            for b in keys:
                if b in asked and k != other:
                    want.setdefault(b, set()).add(h)
        assert {b: sorted(hs) for b, hs in by_band.items()} == {b: sorted(hs) for b, hs in want.items()}
        assert set(found) == {h for hs in want.values() for h in hs}
        counts = index.counts(other, "instance_id", [f"i{i}" for i in range(5)])
        assert dict(counts) == dict(Counter(i for k, i, _ in held.values() if k != other))
    assert filled == {t for t, _ in near_dup_index.LEVELS}  # rows moved through every level
    con = sqlite3.connect(index.path)
    assert con.execute("SELECT count(*) FROM turns").fetchone()[0] == len(held)
    con.close()


def test_a_rows_matches_are_those_of_its_facts_with_the_shortcut(tmp_path):
    """Rows checked through the per-row shortcut get what their facts match, on random rows that
    share tasks and ids but differ in base commits, dates and patches."""
    import json

    from duel_assets.lib.settings import parse_config

    patch = "diff --git a/src/m.py b/src/m.py\n--- a/src/m.py\n+++ b/src/m.py\n@@ -10,4 +10,5 @@\n x\n-y\n+z\n+w\n"
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"instance_id": f"acme__x-{i}", "repo": "acme/x", "base_commit": f"{i:07x}abc",
                                         "created_at": 1_600_000_000 + i * 86_400 * 20, "patch": patch if i % 2 else "",
                                         "problem_statement": f"Task {i}: {_text(random.Random(i), 40)}"}) + "\n"
                             for i in range(6)))
    cfg = parse_config({"sources": [{"format": "swe_zero", "path": str(bench)}], "decontamination": {
        "pr_records": False, "benchmarks": [{"name": "b", "path": str(bench), "policy": "drop"}]}})
    rng = random.Random(3)
    fresh, cached = decontaminate.Decontaminator(cfg), decontaminate.Decontaminator(cfg)
    ways = set()
    for _ in range(400):
        i = rng.randrange(8)
        task = f"Task {i}: {_text(random.Random(i), 40)}" if rng.random() < 0.7 else f"Task {rng.randrange(3)} base commit {i:07x}abc"
        meta = {k: rng.choice([None, 1, True, 1.0, f"{i:07x}abc", 1_600_000_000 + i * 86_400 * 20]) for k in ("base_commit", "created_at")}
        hidden = {"patch": rng.choice([None, patch, ""]), "created_at": rng.choice([None, "2020-09-13T12:26:40Z"])}
        row = (rng.choice([f"acme__x-{i}", f"acme__x-{i + 100}"]), rng.choice(["acme/x", None, "other/y"]),
               [{"role": "system", "content": "s"}, {"role": "user", "content": task}], meta, hidden)
        got = cached.check(*row)
        assert got == fresh.match(fresh.facts(*row))
        ways.update(m.way for m in got)
    assert len(ways) >= 4  # the rows reach most ways


@pytest.mark.parametrize("passes", [0, 1, 8, 10_000])
def test_components_of_a_long_path_in_random_order_are_one(passes, monkeypatch):
    # a chain of near-duplicates whose items come in no order: one component, under its least item
    monkeypatch.setattr(linking, "PROPAGATIONS", passes)  # label passes only, scipy's search only, or both
    rng = np.random.default_rng(3)
    k = 30_000 if passes != 10_000 else 3_000
    order = rng.permutation(k)
    lab = linking.components(k, order[:-1], order[1:])
    assert (lab == 0).all()
    two = linking.components(6, np.array([5, 1, 3]), np.array([3, 4, 0]))  # {0, 3, 5}, {1, 4}, {2}
    assert two.tolist() == [0, 1, 2, 0, 1, 0]
    for n, edges in ((12, 40), (300, 200), (2000, 3000)):  # either way (label passes or graph search): the same
        a, b = rng.integers(0, n, edges), rng.integers(0, n, edges)
        parent = {i: i for i in range(n)}
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = linking.root(parent, x), linking.root(parent, y)
            parent[max(rx, ry)] = min(rx, ry)
        assert linking.components(n, a, b).tolist() == [linking.root(parent, i) for i in range(n)]
    assert linking.components(0, np.zeros(0, int), np.zeros(0, int)).tolist() == []
