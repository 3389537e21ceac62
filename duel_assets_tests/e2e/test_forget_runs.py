"""A forgotten partition's runs leave no trace the UI reads: neither its failed check executions (the
checks' latest, which turn the asset red) nor an asset's cached latest materialization. (The UI's own
GraphQL view after `forget`: test_process_reliability.py.)"""
import dagster as dg

from duel_assets_tests.conftest import materialize

CHECKS = [dg.AssetCheckKey(dg.AssetKey("king_answers"), "format_ok_rate"),
          dg.AssetCheckKey(dg.AssetKey("judge_scores"), "parse_rate")]


def test_forget_runs_leaves_the_other_partitions_latest(duel_env, instance):
    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.runs import forget_runs

    assert materialize(instance, "good").success
    good_run = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "good"}))[0].run_id
    srv = duel_env["standin"]
    srv.state.fault_rate = 1.0  # every call of the next partition fails: its LLM step fails
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("retry_budget = 4", "retry_budget = 1"))
    assert not materialize(instance, "bad", raise_on_error=False).success
    srv.state.fault_rate = 0.0
    bad_runs = set(instance.get_run_ids(filters=dg.RunsFilter(tags={"dagster/partition": "bad"})))
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(CHECKS)
    assert {latest[k].run_id for k in CHECKS} <= bad_runs  # what the UI shows as the checks' latest
    record = instance.get_asset_records([dg.AssetKey("sampled_turns")])[0]
    assert record.asset_entry.last_materialization_record.partition_key == "bad"

    said = forget_runs(instance, "bad", {k for a in ALL_ASSETS for k in a.keys})

    assert said == f"its {len(bad_runs)} run(s) and their events"
    assert instance.get_run_ids(filters=dg.RunsFilter(tags={"dagster/partition": "bad"})) == []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(CHECKS)
    assert {latest[k].run_id for k in CHECKS} == {good_run}
    for key in ("sampled_turns", "pr_records", "king_answers"):
        entry = instance.get_asset_records([dg.AssetKey(key)])[0].asset_entry
        assert entry.last_materialization_record.partition_key == "good" and entry.last_run_id == good_run
        assert {r.partition_key for r in instance.fetch_materializations(dg.AssetKey(key), limit=10).records} == {"good"}
    assert forget_runs(instance, "bad", {dg.AssetKey("sampled_turns")}) == "its 0 run(s) and their events"
