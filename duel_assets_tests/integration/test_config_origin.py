"""Every materialization records the configuration it ran under (hash, file, variables), read back
from the instance's event log; chain.toml is parsed once per run step."""
from __future__ import annotations

import dagster as dg

from duel_assets_tests.conftest import CANARY_KEY, TEST_CHAIN, materialize, materialize_report

PARTITIONED = ("sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
               "exported_buckets")


def recorded(instance, asset: str, key: str | None = None) -> list[dict]:
    """The metadata of every materialization of ``asset`` (of partition ``key``) in the event log, oldest first."""
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key] if key else None)
    records = instance.fetch_materializations(flt, limit=100, ascending=True).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]


def test_each_materialization_shows_the_configuration_and_a_changed_one_shows(duel_env, instance, monkeypatch):
    cfg_file, key = duel_env["config"], "origin_a"
    assert materialize(instance, key).success and materialize_report(instance).success
    first = {a: recorded(instance, a, key)[-1] for a in PARTITIONED}
    first["duel_report"] = recorded(instance, "duel_report")[-1]
    hashes = {md["config_hash"] for md in first.values()}
    assert len(hashes) == 1, first  # one configuration for the whole run
    for md in first.values():
        assert md["config_file"] == str(cfg_file.resolve())
        assert md["config_env"] == f"DUEL_CONFIG={cfg_file}"
        assert CANARY_KEY not in repr(md)  # the endpoint's key is set (LLM_API_KEY): never in metadata

    cfg_file.write_text("# the same settings, with a comment\n" + TEST_CHAIN)
    assert materialize(instance, key, selection=["duel_verdict"]).success
    cfg_file.write_text(TEST_CHAIN.replace("resamples = 500", "resamples = 600"))
    assert materialize(instance, key, selection=["duel_verdict"]).success
    monkeypatch.setenv("DUEL_MODE", "1")
    assert materialize(instance, key, selection=["duel_verdict"]).success
    runs = recorded(instance, "duel_verdict", key)
    assert len(runs) == 4
    assert runs[1]["config_hash"] == runs[0]["config_hash"]  # a comment is not a change
    assert len({r["config_hash"] for r in runs[1:]}) == 3  # a changed value and DUEL_MODE each are
    assert runs[3]["config_env"] == f"DUEL_CONFIG={cfg_file} DUEL_MODE=1"


def test_chain_toml_is_parsed_once_per_run_step(duel_env, instance, monkeypatch):
    from duel_assets.lib.settings import load

    parsed: list[str] = []
    real = load.parse_config
    monkeypatch.setattr(load, "parse_config", lambda data, origin="<dict>": parsed.append(origin) or real(data, origin))
    key = "origin_b"
    # two steps, each reading its settings and, through the IO manager, the warehouse's lock timeout
    assert materialize(instance, key, selection=["sampled_turns", "pr_records"]).success
    assert parsed == [str(duel_env["config"].resolve())]
    duel_env["config"].write_text(TEST_CHAIN.replace("seed = 3", "seed = 4"))
    assert materialize(instance, key, selection=["pr_records"]).success
    assert len(parsed) == 2
