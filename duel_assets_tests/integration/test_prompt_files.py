"""Each turn once in a DUEL_HOME, `sample` without wrap-around, and prompt files that fail loudly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.lib.sampling.history_index import HistoryIndex
from duel_assets.lib.sampling.prompt_files import PromptFileError, load_prompt_file
from duel_assets.lib.sampling.prompt_store import load_partition, sample_prompt_file
from duel_assets.lib.sampling.sampler import build_pool
from duel_assets.lib.settings import ChainConfig, parse_config
from duel_assets_tests.conftest import FIXTURES, materialize, metadata, query

CLI = [sys.executable, "-m", "duel_assets.cli"]


def all_prompt_hashes(home: Path) -> list[str]:
    return [t["history_hash"] for f in sorted((home / "prompt").glob("*.json"))
            for t in json.loads(f.read_text())["turns"]]


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DUEL_CONFIG", "DAGSTER_HOME")}
    env.update(DUEL_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "dagster"))
    return env


def test_sample_delivers_what_the_samples_hold_once_and_says_so(cli_env, tmp_path):
    held = len(build_pool(ChainConfig()).turns)  # distinct histories in the bundled samples
    assert 0 < held < 200
    out = run_cli(cli_env, "sample", "--prompts", "1600")
    assert out.returncode == 0, out.stderr
    assert f"requested 1600 turns; delivered {held}; shortfall {1600 - held}" in out.stdout
    assert "the sources hold no more unused turns (7 of 8 files not written)" in out.stdout
    home = tmp_path / "home"
    hashes = all_prompt_hashes(home)
    assert len(hashes) == held == len(set(hashes)) and [f.name for f in (home / "prompt").glob("*.json")] == ["prompts_1600_000.json"]
    again = run_cli(cli_env, "sample", "--prompts", "400", "--stem", "again")  # a second call finds nothing unused
    assert "delivered 0; shortfall 400" in again.stdout and all_prompt_hashes(home) == hashes
    assert again.returncode == 3 and again.stderr.startswith("error: sample delivered no turn"), again.stderr


def test_two_processes_sampling_at_once_never_share_a_turn(cli_env, tmp_path):
    # one DUEL_HOME; a Dagster instance each (two processes creating one fresh SQLite instance at once
    # can meet Dagster's own "database is locked", which is not what this test is about)
    procs = [subprocess.Popen([*CLI, "sample", "--prompts", "60", "--per-file", "30", "--stem", stem],
                              env={**cli_env, "DAGSTER_HOME": str(tmp_path / f"dagster_{stem}")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for stem in ("left", "right")]
    outs = [p.communicate(timeout=300) for p in procs]
    # a process that found every turn taken by the other delivered nothing: it says so and exits 3
    assert [p.returncode for p in procs] == [3 if "delivered 0;" in out else 0 for out, _ in outs], outs
    hashes = all_prompt_hashes(tmp_path / "home")
    assert len(hashes) == len(set(hashes)) == min(120, len(build_pool(ChainConfig()).turns))
    assert HistoryIndex(tmp_path / "home").count() == len(hashes)


def test_rollouts_sharing_first_steps_are_one_turn():
    pool = build_pool(ChainConfig())
    hashes = [t.history_hash for t in pool.turns]
    assert len(hashes) == len(set(hashes)) and pool.skipped["duplicate_history"] > 0
    firsts = [t for t in pool.turns if t.step == 0]
    assert len({t.instance_id for t in firsts}) == len(firsts)  # one first turn per task, not one per rollout


def test_history_index_claims_and_releases(tmp_path):
    idx = HistoryIndex(tmp_path)
    assert idx.claim("a", [("h1", "t1"), ("h2", "t2"), ("h1", "t3")]) == [2]
    assert idx.claim("b", [("h2", "x"), ("h3", "y")]) == [0]
    assert idx.taken_by_others("a")(["h1", "h2", "h3"]) == {"h3"} and idx.known("b") and not idx.known("c")
    assert idx.release("a") == 2 and idx.claim("b", [("h1", "z")]) == []
    assert idx.claim("b", [("h1", "z")], exact=True) == [] and idx.owners(["h1", "h2", "h3"]) == {"h1": "b"}


@pytest.mark.parametrize("content,reason", [
    ("[]", "it lists no turns"),
    ('{"turns": [1, 2, 3]}', "turn_not_an_object: 3"),
    ('[{"turn_id": "t", "instance_id": "i", "history": [{"role": "narrator", "content": "x"}], "reference": "r"}]', "invalid_history: 1"),
])
def test_a_prompt_file_without_valid_turns_is_an_error(tmp_path, content, reason):
    p = tmp_path / "p.json"
    p.write_text(content)
    with pytest.raises(PromptFileError, match=f"has no valid turn .*{reason}"):
        load_prompt_file(p)


def test_prompt_files_must_be_regular_and_small(tmp_path):
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(PromptFileError, match="a character device, not a regular file"):
        load_prompt_file(link)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(PromptFileError, match="a FIFO, not a regular file"):
        load_prompt_file(fifo)  # refused at once: the open does not wait for a writer
    big = tmp_path / "big.json"
    big.write_text("[" + " " * 5000 + "]")
    with pytest.raises(PromptFileError, match=r"5002 bytes, over sampling.max_prompt_file_bytes = 4096"):
        load_prompt_file(big, max_bytes=4096)
    cfg = parse_config({"sampling": {"max_prompt_file_bytes": 1024}})
    with pytest.raises(PromptFileError, match="over sampling.max_prompt_file_bytes = 1024"):
        load_partition(tmp_path, big, "big", cfg)


def test_prompt_file_histories_are_trimmed_like_source_rows(tmp_path):
    cfg = parse_config({"sampling": {"max_history_chars": 20_000, "max_observation_chars": 5_000}})
    doc = sample_prompt_file(tmp_path, tmp_path / "prompt" / "k.json", "k", cfg)
    t = doc["turns"][0]
    huge = {**t, "turn_id": "huge", "history": [*t["history"], {"role": "assistant", "content": "x" * 10_000_000},
                                                 {"role": "user", "content": "y" * 10_000_000}]}
    f = tmp_path / "prompt" / "hand.json"
    f.write_text(json.dumps([huge]))
    turn = load_partition(tmp_path, f, "hand", cfg).turns[0]
    chars = sum(len(m["content"]) for m in turn.history)
    assert turn.trimmed and chars <= 20_000 and all(len(m["content"]) <= 10_000 for m in turn.history)
    assert turn.history[0] == t["history"][0]  # the system prompt and task stay
    again = load_partition(tmp_path, f, "hand", cfg).turns[0]
    assert again.history == turn.history and again.history_hash == turn.history_hash  # trimming is idempotent


def test_turn_fields_round_trip_through_prompt_file_and_table(duel_env, instance):
    fix = FIXTURES / "sera_raw_sample.jsonl"
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + f'\n[[sources]]\nformat = "sera"\npath = "{fix}"\n')
    res = materialize(instance, "roundtrip", selection=["sampled_turns"])
    doc = json.loads((duel_env["home"] / "prompt" / "roundtrip.json").read_text())
    rows = query(duel_env["home"], "SELECT turn_id, license, reward, source_meta, hidden, history_hash FROM duel.sampled_turns "
                                   "WHERE prompt_file = 'roundtrip' ORDER BY turn_id")
    by_id = {t["turn_id"]: t for t in doc["turns"]}
    assert len(rows) == len(by_id) == metadata(res, "sampled_turns")["turns"] > 0
    for turn_id, lic, reward, meta, hidden, h in rows:
        t = by_id[turn_id]
        assert (lic, reward, json.loads(meta), json.loads(hidden), h) == (t["license"], t["reward"], t["source_meta"], t["hidden"], t["history_hash"])
        assert json.loads(meta)["rollout"] in ("T1", "T2") and json.loads(hidden)["patch"].startswith("diff --git")
    from duel_assets.lib import tables
    from duel_assets.lib.warehouse import Warehouse

    back = tables.turns_from_frame(Warehouse.from_env(duel_env["home"]).read_partition("sampled_turns", "roundtrip"))
    assert sorted(t.history_hash for t in back) == sorted(by_id[t.turn_id]["history_hash"] for t in back)


@pytest.mark.parametrize("content", ["[]", '{"turns": [1, 2, 3]}'])
def test_sampled_turns_fails_on_a_prompt_file_without_valid_turns(duel_env, instance, content):
    (duel_env["home"] / "prompt").mkdir(exist_ok=True)
    (duel_env["home"] / "prompt" / "empty.json").write_text(content)
    res = materialize(instance, "empty", selection=["sampled_turns"], raise_on_error=False)
    assert not res.success
    err = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error.message
    assert "empty.json has no valid turn" in err


def test_a_deleted_prompt_file_fails_until_resample_is_asked(duel_env, instance):
    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.resources import build_resources

    pf = duel_env["home"] / "prompt" / "hand.json"
    first = materialize(instance, "hand", selection=["sampled_turns"])  # never sampled before: sampled now
    assert metadata(first, "sampled_turns")["origin"] == "sampled now" and pf.exists()
    pf.unlink()
    res = materialize(instance, "hand", selection=["sampled_turns"], raise_on_error=False)
    assert not res.success and not pf.exists()
    err = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error.message
    assert f"prompt file {pf} of partition hand was deleted" in err
    (duel_env["home"] / "history_index.sqlite").unlink()  # the index lost too: Dagster's record of the partition still says so
    res = materialize(instance, "hand", selection=["sampled_turns"], raise_on_error=False)
    assert not res.success and not pf.exists()
    again = dg.materialize(ALL_ASSETS, partition_key="hand", instance=instance, resources=build_resources(),
                           selection=["sampled_turns"], tags={"duel/resample": "true"})
    assert metadata(again, "sampled_turns")["origin"] == "re-sampled" and pf.exists()
    hashes = all_prompt_hashes(duel_env["home"])
    assert len(hashes) == len(set(hashes))
