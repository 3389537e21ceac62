"""`duel_report`: the work over all partitions, in one unpartitioned asset, and the automation that
materializes it once partitions have landed."""

import dagster as dg

from duel_assets.defs.assets import duel_verdict, exported_buckets
from duel_assets.defs.partitions import PROMPT_FILES
from duel_assets.defs.settings import DuelSettings
from duel_assets.lib.export.report import write_report
from duel_assets.lib.verdict.verdicts import standin_note

# Requested when a duel_verdict or exported_buckets partition has been updated since the report
# last ran, and only while no partition of either is in a run or backfill still going: a backfill
# of N partitions gives one report at its end, not N.
AFTER_PARTITIONS_LAND = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after partitions land")


@dg.asset(
    group_name="duel",
    kinds={"markdown", "parquet"},
    deps=[duel_verdict, exported_buckets],
    automation_condition=AFTER_PARTITIONS_LAND,
)
def duel_report(context: dg.AssetExecutionContext, settings: DuelSettings) -> dg.MaterializeResult:
    """The gate over all registered partitions, `report/report.md` and the SFT export's card
    (`export/README.md`); removes the shards of partitions that are not in the export. Reads only the
    partitions' small summaries and manifests."""
    paths, cfg, mode = settings.paths(), settings.config(), settings.mode()
    keys = list(context.instance.get_dynamic_partitions(PROMPT_FILES))
    rep = write_report(paths, keys, cfg, mode)
    g, prov = rep.overall.to_dict(), rep.provenance
    note = standin_note(prov)
    return dg.MaterializeResult(metadata={
        **settings.config_metadata(cfg),
        "gate_all_partitions": g["verdict"],
        "gate_all_partitions_figures": g,
        "partitions": len(keys),
        "turns": g["turns"] + sum(g["excluded"].values()),
        "parsed": g["parsed_turns"],
        "excluded_by_reason": g["excluded"],
        "sft_rows": rep.sft["rows"],
        "sft_layout": f"{rep.sft['layout']} (reasoning: {rep.sft['reasoning']})",
        "sft_partitions_included": len(rep.sft["partitions_included"]),
        "sft_partitions_excluded": dict(list(rep.sft["partitions_excluded"].items())[:50]),
        "shards_pruned": len(rep.sft["pruned"]),
        "standin": prov["standin"],
        **({"standin_note": note} if note else {}),
        "served_models": prov["served_models"],
        "report": dg.MetadataValue.path(str(rep.path)),
        "card": dg.MetadataValue.path(str(rep.card)),
        "report_md": dg.MetadataValue.md(rep.text[:60_000]),
    })


report_automation_sensor = dg.AutomationConditionSensorDefinition(
    "duel_report_automation",
    target=dg.AssetSelection.assets(duel_report),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes duel_report once partitions have landed: after duel_verdict or exported_buckets "
                "changes, when none of their partitions is in a run or backfill still going.",
)
