"""Sensors: register new prompt files as partitions; judge a partition when both answers land."""

import json

import dagster as dg

from duel_assets.defs.assets import duel_verdict, exported_buckets, pr_records, sampled_turns
from duel_assets.defs.partitions import PROMPT_FILES, prompt_files
from duel_assets.defs.settings import DuelSettings
from duel_assets.lib.watch import judging_run_key, needs_judging, scan_prompt_dir


@dg.sensor(
    name="prompt_file_sensor",
    target=[sampled_turns, pr_records],
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers every new $DUEL_HOME/prompt/<key>.json as a partition and requests its sampled_turns and pr_records.",
)
def prompt_file_sensor(context: dg.SensorEvaluationContext, settings: DuelSettings) -> dg.SensorResult | dg.SkipReason:
    keys, refused = scan_prompt_dir(settings.paths().prompt_dir)
    for name in refused:
        context.log.warning(f"ignoring prompt file {name}")
    known = set(context.instance.get_dynamic_partitions(PROMPT_FILES))
    new = [k for k in keys if k not in known]
    if not new:
        return dg.SkipReason(f"no new prompt files ({len(keys)} known)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"prompt:{k}") for k in new],
        dynamic_partitions_requests=[prompt_files.build_add_request(new)],
    )


KING, CHALLENGER, JUDGE = dg.AssetKey("king_answers"), dg.AssetKey("challenger_answers"), dg.AssetKey("judge_scores")


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str):
    res = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1)
    return res.records[0] if res.records else None


def _unfinished(instance: dg.DagsterInstance, run_id: str) -> bool:
    """The run that produced an answer is still going: it may yet write the other answer or judge
    the partition itself, so the pair is not final."""
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


@dg.sensor(
    name="judging_sensor",
    target=dg.AssetSelection.assets(JUDGE, duel_verdict, exported_buckets),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests judge_scores and what is downstream for a partition once both its king_answers and "
                "challenger_answers exist and at least one is newer than its judging - once per new pair of "
                "answer versions.",
)
def judging_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    instance = context.instance
    state = json.loads(context.cursor or "{}")
    after = state.get("after", 0)
    newest = after
    touched: set[str] = set()
    for asset_key in (KING, CHALLENGER):
        cursor = None
        while True:
            res = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=after), limit=500, cursor=cursor, ascending=True)
            for rec in res.records:
                newest = max(newest, rec.storage_id)
                if rec.partition_key:
                    touched.add(rec.partition_key)
            if not res.has_more:
                break
            cursor = res.cursor
    requests = []
    pending = set(state.get("pending", []))
    for p in sorted(touched | pending):
        k, c, j = (_latest(instance, a, p) for a in (KING, CHALLENGER, JUDGE))
        pending.discard(p)
        if k is None or c is None:
            continue
        in_progress = any(_unfinished(instance, r.run_id) for r in (k, c))
        if in_progress:
            pending.add(p)  # look again next tick, once the run that wrote the answers has ended
        if needs_judging(k.storage_id, c.storage_id, j.storage_id if j else None, in_progress):
            requests.append(dg.RunRequest(partition_key=p, run_key=judging_run_key(p, k.storage_id, c.storage_id)))
    cursor = json.dumps({"after": newest, "pending": sorted(pending)})
    if not requests:
        return dg.SensorResult(skip_reason=f"no partition with a new pair of answers ({len(touched)} touched)", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


ALL_SENSORS = [prompt_file_sensor, judging_sensor]
