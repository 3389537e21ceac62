"""Runs whose process is gone: each run records the process that executes it (tags ``duel/pid``,
``duel/host``, ``duel/started``); a run not finished whose process of this host has ended (kill -9,
OOM, a crash) is marked failed — by every duel-assets command at its start and by
``dead_run_sensor`` in the daemon — so it no longer holds a place in the run queue or blocks
``duel-assets forget``.

``forget_runs`` removes a forgotten partition's runs from the instance. Dagster's ``delete_run``
leaves two traces the UI reads — the runs' asset check executions and an asset's cached latest
materialization — which are removed through the SQL event storage's tables (Dagster 1.13's
schema; another event storage is left as it is)."""
from __future__ import annotations

import dagster as dg
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, AssetKeyTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import serialize_value

from duel_assets.lib.system.processes import gone, identity

_PREFIX = "duel/"
_KEYS = ("pid", "host", "started")


def process_tags() -> dict[str, str]:
    """This process, as run tags."""
    return {f"{_PREFIX}{k}": v for k, v in identity().items()}


def record_run_process(instance: dg.DagsterInstance | None, run: dg.DagsterRun | None) -> None:
    """Tag ``run`` with this process (the one executing it), unless it already says so."""
    if instance is None or run is None:
        return
    tags = process_tags()
    if any(run.tags.get(k) != v for k, v in tags.items()):
        instance.add_run_tags(run.run_id, tags)


def _process_of(run: dg.DagsterRun) -> dict[str, str]:
    return {k: run.tags[f"{_PREFIX}{k}"] for k in _KEYS if f"{_PREFIX}{k}" in run.tags}


def dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Unfinished runs whose recorded process, on this host, has ended."""
    unfinished = [s for s in dg.DagsterRunStatus if s not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                                              dg.DagsterRunStatus.CANCELED)]
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=unfinished))
    return [r for r in runs if not r.is_finished and (p := _process_of(r)) and gone(p)]


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark :func:`dead_runs` failed; one line per run marked."""
    lines = []
    for run in dead_runs(instance):
        current = instance.get_run_by_id(run.run_id)  # another process may have marked it meanwhile
        if current is None or current.is_finished:
            continue
        p = _process_of(run)
        why = f"its process (PID {p.get('pid')} on {p.get('host')}) ended without finishing it (killed or crashed)"
        instance.report_run_failed(current, f"Marked failed by duel-assets: {why}.")
        part = run.tags.get("dagster/partition")
        lines.append(f"run {run.run_id}{f' (partition {part})' if part else ''} was {run.status.value}: "
                     f"marked failed, {why}")
    return lines


def forget_runs(inst: dg.DagsterInstance, key: str, asset_keys) -> str:
    """The partition's history in the instance: its runs (those tagged ``dagster/partition`` = key,
    all finished) are deleted with their events and their asset check executions, and the assets'
    cached partition status is dropped, so the UI shows the partition as gone — not as failed (a
    failed run's check executions would otherwise stay the checks' latest, and the asset red)."""
    runs = list(inst.get_run_ids(filters=dg.RunsFilter(tags={"dagster/partition": key})))
    for run_id in runs:
        inst.delete_run(run_id)
    storage = inst.event_log_storage
    if runs and isinstance(storage, SqlEventLogStorage):  # another event storage keeps its own records
        _delete_check_executions(storage, runs)
        _point_at_remaining_materializations(inst, storage, asset_keys, set(runs))
    inst.wipe_asset_cached_status(sorted(asset_keys, key=lambda k: k.to_string()))
    try:
        for asset_key in asset_keys:
            inst.wipe_asset_partitions(asset_key, [key])
    except NotImplementedError:
        pass  # Dagster's SQLite and PostgreSQL event storages: the runs' deletion removed the events
    return f"its {len(runs)} run(s) and their events"


def _delete_check_executions(storage: SqlEventLogStorage, run_ids: list[str]) -> None:
    """Asset check executions of ``run_ids``: Dagster's ``delete_run`` leaves them, and the UI would
    still read a failed one as the check's latest."""
    with storage.index_connection() as con:
        con.execute(AssetCheckExecutionsTable.delete().where(AssetCheckExecutionsTable.c.run_id.in_(run_ids)))


def _point_at_remaining_materializations(inst: dg.DagsterInstance, storage: SqlEventLogStorage, asset_keys,
                                         run_ids: set[str]) -> None:
    """An asset whose cached latest materialization (or latest run) came from one of ``run_ids``, now
    deleted, is pointed at its latest remaining one (or at none): the UI's asset summary reads it."""
    for record in inst.get_asset_records(list(asset_keys)):
        last = record.asset_entry.last_materialization_record
        stale = last is not None and last.run_id in run_ids
        if not stale and record.asset_entry.last_run_id not in run_ids:
            continue
        left = inst.fetch_materializations(record.asset_entry.asset_key, limit=1).records
        values = {"last_run_id": left[0].run_id if left else None}
        if stale:
            values["last_materialization"] = serialize_value(left[0]) if left else None
        with storage.index_connection() as con:
            con.execute(AssetKeyTable.update().values(values)
                        .where(AssetKeyTable.c.asset_key == record.asset_entry.asset_key.to_string()))


@dg.sensor(name="dead_run_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks failed the runs not finished whose process (recorded in the tags duel/pid, duel/host) "
                       "has ended on this host: a kill -9, an OOM kill or a crash no longer holds a place in the run "
                       "queue.")
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    lines = fail_dead_runs(context.instance)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason(f"{len(lines)} run(s) whose process is gone marked failed")
