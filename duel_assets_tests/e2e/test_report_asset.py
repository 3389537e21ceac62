"""`duel_report`: the work over all partitions in one unpartitioned asset, materialized once the
partitions have landed."""
import json

import dagster as dg

from duel_assets.defs.assets import ALL_ASSETS
from duel_assets.defs.report import duel_report, report_automation_sensor
from duel_assets.defs.resources import build_resources
from duel_assets.lib.export.paths import partition_files
from duel_assets.lib.settings import Paths, load_config
from duel_assets.lib.verdict.gate import gate
from duel_assets_tests.conftest import materialize, materialize_report, metadata

KEYS = ["prompts_24_000", "prompts_24_001", "prompts_24_002", "prompts_24_003"]


def _defs() -> dg.Definitions:
    return dg.Definitions(assets=[*ALL_ASSETS, duel_report], resources=build_resources())


def tick(instance, cursor=None):
    return dg.evaluate_automation_conditions(defs=_defs(), instance=instance, asset_selection=dg.AssetSelection.assets(duel_report),
                                             cursor=cursor)


def test_report_sensor_runs_by_default_and_targets_the_report_alone():
    assert report_automation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    (spec,) = duel_report.specs
    assert spec.partitions_def is None and spec.automation_condition is not None
    keys = report_automation_sensor.asset_selection.resolve(_defs().resolve_asset_graph())
    assert keys == {dg.AssetKey("duel_report")}


def test_after_four_partitions_one_report_holds_the_overall_gate(duel_env, instance):
    home = duel_env["home"]
    paths = Paths(home)
    first = tick(instance)
    assert first.total_requested == 0
    for k in KEYS:
        assert materialize(instance, k).success
    # the partitions wrote only their own files: no report.md, no card
    assert not paths.report.exists() and not (paths.export_dir / "README.md").exists()
    assert all(partition_files(paths, k).summary.exists() and partition_files(paths, k).manifest.exists() for k in KEYS)
    # four partitions landed: the automation asks for one report, not four
    second = tick(instance, first.cursor)
    assert second.total_requested == 1 and second.get_requested_partitions(dg.AssetKey("duel_report")) == {None}
    res = materialize_report(instance)
    md = metadata(res, "duel_report")
    # the overall gate is the gate over every partition's turns at once
    scores = [x for k in KEYS for x in json.loads(partition_files(paths, k).summary.read_text())["scores"]]
    expected = gate(scores, load_config().gate).to_dict()
    assert md["gate_all_partitions"] == expected["verdict"] and md["gate_all_partitions_figures"] == expected
    assert md["partitions"] == 4 and md["turns"] == 24
    report = paths.report.read_text()
    assert all(k in report for k in KEYS) and "Gate, all partitions" in report
    card = (paths.export_dir / "README.md").read_text()
    assert "## Gate" in card and "## Licences" in card
    # handled: the next tick asks for nothing
    third = tick(instance, second.cursor)
    assert third.total_requested == 0
    # re-running a partition does not touch the report or the card; it makes the report due again
    before = (paths.report.stat().st_mtime_ns, (paths.export_dir / "README.md").stat().st_mtime_ns)
    materialize(instance, KEYS[1], selection=["duel_verdict", "exported_buckets"])
    assert (paths.report.stat().st_mtime_ns, (paths.export_dir / "README.md").stat().st_mtime_ns) == before
    assert tick(instance, third.cursor).total_requested == 1


def test_the_report_waits_for_partitions_in_flight(duel_env, instance):
    first = tick(instance)
    materialize(instance, KEYS[0])
    # a run for the second partition is queued (not finished): the report waits for it
    job = dg.Definitions(assets=ALL_ASSETS, jobs=[dg.define_asset_job("verdicts", selection=["duel_verdict", "exported_buckets"])],
                         resources=build_resources()).resolve_job_def("verdicts")
    instance.add_dynamic_partitions("prompt_files", [KEYS[1]])
    run = instance.create_run_for_job(job, asset_selection={dg.AssetKey("duel_verdict"), dg.AssetKey("exported_buckets")},
                                      tags={"dagster/partition": KEYS[1]})
    waiting = tick(instance, first.cursor)
    assert waiting.total_requested == 0
    instance.report_run_canceled(run)
    done = tick(instance, waiting.cursor)
    assert done.total_requested == 1
