"""Near-duplicate control: the same instance run three times, the runs differing only in temporary
paths, timestamps and hashes, gives one kept turn per cluster, the same one on every run and
whatever the order of the rows; near-duplicates of turns another prompt file holds and turns over
the caps are skipped and counted."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from duel_assets.lib.sampling.curation.near_dup import Clusters, signature
from duel_assets.lib.sampling.curation.shingles import normalise, words
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.prompt_store import sample_prompt_file
from duel_assets.lib.sampling.readers.mini_swe_agent import read_swe_zero
from duel_assets.lib.sampling.sampler import NothingToSample
from duel_assets.lib.sampling.sources import bundled_path
from duel_assets.lib.settings import NearDuplicatesConfig, parse_config

SYSTEM = json.loads(bundled_path("swe_zero_sample.jsonl").read_text().splitlines()[0])["messages"][0]["content"]
TASK = ("Please solve this issue in the repository acme/cache.\n\n## Issue\n\nThe cache writes its index to a "
        "temporary file and never renames it, so a crash leaves a stale index that later runs read as valid.\n\n"
        "## Repository Info\n\n- Repo: acme/cache\n- Base commit: 0123456789abcdef0123456789abcdef01234567")


def run(i: int, instance: str = "acme__cache-5", commands: tuple[str, ...] = ()) -> dict:
    """One run of the instance: the same moves; temporary paths, times and hashes of its own."""
    tmp, stamp, sha = f"/tmp/tmp{random.Random(i).randrange(16**8):08x}", f"2024-0{i + 1}-1{i} 0{i}:1{i}:2{i}", f"{i}" * 7 + "abcdef"
    cmds = commands or ("ls -la src/", "grep -n 'rename' src/index.py", "sed -n 1,40p src/index.py")
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    obs = [f"Observation: total 12\ndrwxr-xr-x 2 root root 4096 {stamp} .\n-rw-r--r-- 1 root root 812 {stamp} index.py\n",
           f"Observation: src/index.py:17:    # write to {tmp}/index.json then rename (commit {sha})\n",
           f"Observation: import os\nTMP = '{tmp}'\ndef save(index):\n    open(TMP + '/index.json', 'w').write(index)\n"]
    for c, o in zip(cmds, obs):
        msgs += [{"role": "assistant", "content": f"THOUGHT: Next step.\n\n```bash\n{c}\n```\n"}, {"role": "user", "content": o}]
    msgs.append({"role": "assistant", "content": "THOUGHT: Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```\n"})
    return {"instance_id": instance, "repo": "acme/cache", "messages": msgs, "exit_status": "Submitted"}


def rows() -> list[dict]:
    # three runs of one instance, and a run of it that takes other steps: not a near-duplicate of the three
    other = run(7, commands=("cat setup.cfg", "find . -name '*.toml'", "git log --oneline -5"))
    return [run(0), run(1), run(2), other]


def write(path: Path, data: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return path


def cfg_for(path: Path, **near) -> object:
    return parse_config({"sources": [{"format": "swe_zero", "path": str(path)}], "sampling": {"turns_per_file": 50, "seed": 2},
                         "near_duplicates": {"enabled": True, **near}})


def test_normalising_removes_what_differs_between_runs():
    a, b = run(0)["messages"][5]["content"], run(1)["messages"][5]["content"]
    assert a != b and normalise(a) == normalise(b)
    assert "<tmp>" in normalise(a) and "<hex>" in normalise(a)


def test_each_kind_of_temporary_path_is_one_placeholder():
    text = ("wrote /tmp/tmpab12cd/x.py, /var/tmp/q, /private/tmp/z1 and /dev/shm/w "
            "/var/folders/9k/T/y and C:\\Users\\me\\AppData\\Local\\Temp\\tmp9\\out.txt; kept /tmpl /tmp.txt /var/log, all in /tmp.")
    assert words(text) == ["wrote", "<tmp>", "<tmp>", "<tmp>", "and", "<tmp>", "<tmp>", "and", "<tmp>",
                           "kept", "tmpl", "tmp", "txt", "var", "log", "all", "in", "<tmp>"]


def test_three_runs_keep_one_turn_per_cluster_the_same_one_in_any_order(tmp_path):
    chosen = []
    for attempt, order in enumerate(([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1])):
        home = tmp_path / f"home{attempt}"
        src = write(tmp_path / f"runs{attempt}.jsonl", [rows()[i] for i in order])
        payload = sample_prompt_file(home, home / "prompt" / "k.json", "k", cfg_for(src))
        chosen.append(sorted(t["turn_id"] for t in payload["turns"]))
        # step 0 is the same history in all four runs (identical: kept once); steps 1-3 of the three runs are
        # near-duplicate clusters of three (one kept each); the fourth run's steps 1-3 are their own
        other = read_swe_zero(rows()[3]).traj_id
        assert sorted(t["step"] for t in payload["turns"] if t["traj_id"] != other and t["step"]) == [1, 2, 3]
        assert sorted(t["step"] for t in payload["turns"] if t["traj_id"] == other and t["step"]) == [1, 2, 3]
        assert [t["step"] for t in payload["turns"]].count(0) == 1 and len(payload["turns"]) == 7
        assert payload["skipped"]["near_duplicate"] == 6 and payload["skipped"]["duplicate_history"] == 3
        assert payload["near_duplicates"]["skipped"]["near_duplicate"] == 6
        assert payload["near_duplicates"]["threshold"] == 0.8
    assert chosen[0] == chosen[1] == chosen[2]
    # the kept member of each cluster is the one with the smallest history hash
    turns = [t for r in rows()[:3] for t in cut_turns(read_swe_zero(r))[0]]
    for step in (1, 2, 3):
        cluster = [t for t in turns if t.step == step]
        assert min(cluster, key=lambda t: t.history_hash).turn_id in chosen[0]


def test_clusters_are_pairs_near_in_both_task_and_recent_steps():
    nd = NearDuplicatesConfig(enabled=True)
    a, b = (cut_turns(read_swe_zero(run(i)))[0][2] for i in (0, 1))
    other_task = cut_turns(read_swe_zero({**run(1), "messages": [run(1)["messages"][0], {"role": "user", "content": "Please "
                           "fix the flaky test in the scheduler of repository zed/clock.\n\n## Issue\n\nA test fails "
                           "on leap days."}, *run(1)["messages"][2:]]}))[0][2]
    assert signature(a, nd).near(signature(b, nd), 0.8)
    assert not signature(a, nd).near(signature(other_task, nd), 0.8)  # the same steps under another task
    kept = Clusters(nd).keep([a, b, other_task])
    assert {t.turn_id for t in kept} == {min(a, b, key=lambda t: t.history_hash).turn_id, other_task.turn_id}


def test_a_near_duplicate_of_a_turn_kept_from_an_earlier_batch_is_skipped():
    """A window's later block: its turns near one kept from an earlier block are skipped (that one stays)."""
    nd = NearDuplicatesConfig(enabled=True)
    first, second, other = (cut_turns(read_swe_zero(r))[0] for r in (run(0), run(1), rows()[3]))
    clusters = Clusters(nd)
    assert clusters.keep(first) == first  # one run: no two of its turns are near
    kept = clusters.keep([*second, *other])
    assert kept == other  # run 1's turns are near run 0's (the same task, steps and moves but for noise)
    assert clusters.skipped["near_duplicate"] == len(second)
    assert clusters.keep(second[1:]) == []  # and stays so for a third batch


def test_a_near_duplicate_of_a_turn_another_prompt_file_holds_is_skipped(tmp_path):
    home = tmp_path / "home"
    first = sample_prompt_file(home, home / "prompt" / "a.json", "a", cfg_for(write(tmp_path / "a.jsonl", [run(0)])))
    assert len(first["turns"]) == 4
    second = sample_prompt_file(home, home / "prompt" / "b.json", "b", cfg_for(write(tmp_path / "b.jsonl", [run(1), rows()[3]])))
    # run 1's step 0 is run 0's history (duplicate_history); its steps 1-3 are near runs 0's (held by a.json)
    assert second["skipped"]["near_duplicate_held"] == 3 and second["skipped"]["duplicate_history"] >= 1
    assert {t["traj_id"] for t in second["turns"]} == {read_swe_zero(rows()[3]).traj_id}
    # sampled again, b gives its entries back first and still skips the same turns
    from duel_assets.lib.sampling.curation.near_dup_index import NearDupIndex

    assert NearDupIndex(home).release("b") == len(second["turns"])


@pytest.mark.parametrize("near", [True, False], ids=["near-duplicates", "plain"])
def test_two_sources_holding_one_history_give_it_to_the_prompt_file_once(near, tmp_path):
    """Each source of a prompt file takes its share, but a history is taken once across them (the
    second source skips it as duplicate_history), so the near-duplicate index records each turn once
    and another prompt file's cap counts it once."""
    import sqlite3

    home = tmp_path / "home"
    same = [write(tmp_path / f"s{i}.jsonl", [rows()[3]]) for i in (1, 2)]
    cfg = parse_config({"sources": [{"format": "swe_zero", "path": str(p)} for p in same],
                        "sampling": {"turns_per_file": 50, "seed": 2}, "near_duplicates": {"enabled": near}})
    a = sample_prompt_file(home, home / "prompt" / "a.json", "a", cfg)
    hashes = [t["history_hash"] for t in a["turns"]]
    assert len(hashes) == len(set(hashes)) == len(cut_turns(read_swe_zero(rows()[3]))[0])
    assert a["skipped"]["duplicate_history"] >= len(hashes)  # the second source's turns, all taken by the first
    if not near:
        return
    con = sqlite3.connect(home / "near_dup_index.sqlite")
    assert con.execute("SELECT count(*), count(DISTINCT hash) FROM turns").fetchone() == (len(hashes), len(hashes))
    con.close()
    more = write(tmp_path / "more.jsonl", [run(5, commands=("pwd", "whoami", "uname -a"))])
    b = sample_prompt_file(home, home / "prompt" / "b.json", "b", cfg_for(more, max_per_instance=len(hashes) + 2))
    assert len(b["turns"]) == 2 and b["skipped"]["cap_per_instance"] > 0


def test_a_claim_given_a_history_twice_records_it_once_the_first(tmp_path):
    import numpy as np

    from duel_assets.lib.sampling.curation.near_dup import Signature
    from duel_assets.lib.sampling.curation.near_dup_index import NearDupIndex

    turns = [cut_turns(read_swe_zero(run(i)))[0][1] for i in (0, 1)]
    sig = [Signature(turns[0].history_hash, np.full(4, i, np.uint32), np.full(4, i, np.uint32), keys=[i + 1]) for i in (0, 1)]
    index = NearDupIndex(tmp_path)
    index.claim("a", [(turns[0], sig[0]), (turns[0], sig[1]), (turns[1], sig[1])], 1, 4)
    _, found = index.candidates("b", [1, 2])
    assert set(found) == {turns[0].history_hash, turns[1].history_hash}
    assert found[turns[0].history_hash][1] == sig[0].to_bytes()  # the first signature given for it
    index.claim("a", [], 1, 4)  # recording nothing replaces what it held with nothing
    assert index.candidates("b", [1, 2]) == ({}, {})


def test_caps_per_instance_and_per_repository_count_every_prompt_file(tmp_path):
    home = tmp_path / "home"
    a = sample_prompt_file(home, home / "prompt" / "a.json", "a", cfg_for(write(tmp_path / "runs.jsonl", rows()), max_per_instance=3))
    assert len(a["turns"]) == 3 and a["skipped"]["cap_per_instance"] > 0
    more = write(tmp_path / "more.jsonl", [run(5, commands=("pwd", "whoami", "uname -a")),
                                           run(6, instance="acme__cache-9", commands=("id", "date", "env"))])
    with pytest.raises(NothingToSample, match="cap_per_instance"):  # a.json holds 3 turns of acme__cache-5 already
        sample_prompt_file(home, home / "prompt" / "b.json", "b", cfg_for(more, max_per_instance=3, max_per_repo=3))
    c = sample_prompt_file(home, home / "prompt" / "c.json", "c", cfg_for(more, max_per_repo=5))
    assert len(c["turns"]) == 2 and c["skipped"]["cap_per_repo"] > 0  # 3 of acme/cache's 5 are a.json's


def test_candidates_share_a_band_of_both_signatures_not_of_one_alone():
    from duel_assets.lib.sampling.curation.near_dup import Bands

    nd = NearDuplicatesConfig(enabled=True)
    a, b = (signature(cut_turns(read_swe_zero(run(i)))[0][2], nd) for i in (0, 1))
    # the same task, other steps: the steps signature of another run of the instance
    other_steps = signature(cut_turns(read_swe_zero(rows()[3]))[0][2], nd)
    bands = Bands(nd.threshold, nd.num_perm)
    bands.insert(a, "a")
    assert bands.query(b) == {"a"} and a.near(b, nd.threshold)
    assert a.task.jaccard(other_steps.task) == 1.0 and a.steps.jaccard(other_steps.steps) < nd.threshold
    assert bands.query(other_steps) == set() and not a.near(other_steps, nd.threshold)
    # every band holds rows of both signatures: a key changes with either of them
    assert len(a.bands(bands.b, bands.r)) == bands.b and bands.b * bands.r <= nd.num_perm
