"""Nothing machine-specific reaches a request: the same partition built from two checkouts at
different paths (sources, PR records, DUEL_HOME and the Dagster home all elsewhere, at different
depths) sends the same request bodies, byte for byte."""
import shutil
from pathlib import Path

import dagster as dg

from duel_assets.lib.sampling.sources import path_identity
from duel_assets_tests.conftest import FIXTURES, TEST_CHAIN, materialize, query

FIX = FIXTURES


def _checkout(root: Path) -> tuple[Path, Path]:
    """A copy of the fixtures the partition reads, and a DUEL_HOME, both under ``root``."""
    fixtures = root / "duel_assets_tests" / "fixtures"
    fixtures.mkdir(parents=True)
    for name in ("coderforge_sample.jsonl", "tool_pr_records.jsonl"):
        shutil.copy(FIX / name, fixtures / name)
    home = root / "home"
    home.mkdir()
    return fixtures, home


def _build(root: Path, monkeypatch, standin) -> tuple[list[bytes], list]:
    fixtures, home = _checkout(root)
    cfg = root / "chain.toml"
    cfg.write_text(TEST_CHAIN + f"""
[[sources]]
format = "coderforge"
path = "{fixtures / 'coderforge_sample.jsonl'}"

[pr_records]
path = "{fixtures / 'tool_pr_records.jsonl'}"
""")
    (root / "dagster_home").mkdir()
    monkeypatch.setenv("DUEL_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.setenv("DUEL_CONFIG", str(cfg))
    monkeypatch.chdir(root)
    standin.state.bodies = []
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        materialize(instance, "cf_batch")
    bodies, standin.state.bodies = standin.state.bodies, None
    turns = query(home, "SELECT turn_id, history_hash FROM duel.sampled_turns ORDER BY turn_id")
    return bodies, turns


def test_two_checkouts_send_the_same_bodies(duel_env, monkeypatch):
    standin = duel_env["standin"]
    tmp = duel_env["tmp"]
    first, turns_a = _build(tmp / "a" / "x", monkeypatch, standin)
    second, turns_b = _build(tmp / "bb" / "a-much-longer-folder" / "y", monkeypatch, standin)
    assert turns_a == turns_b and turns_a
    assert len(first) >= 2 * len(turns_a)  # king, challenger and judges for each turn
    assert sorted(first) == sorted(second)
    for body in first:
        assert str(tmp).encode() not in body and b"/a/x/" not in body


def test_a_local_path_is_named_by_its_last_component_only():
    assert path_identity("/home/me/clone/fixtures/rows.jsonl") == path_identity("/srv/ci/x/fixtures/rows.jsonl") == "rows.jsonl"
    assert path_identity("/data/trajs/") == "trajs"
    assert path_identity("/data/*.jsonl") == "*.jsonl"
    assert path_identity("AlienKevin/SWE-ZERO-12M-trajectories") == "AlienKevin/SWE-ZERO-12M-trajectories"
    assert path_identity("hf://datasets/a/b/data/train-0.parquet") == "hf://datasets/a/b/data/train-0.parquet"
    assert path_identity("bundled:swe_zero_sample.jsonl") == "bundled:swe_zero_sample.jsonl"
