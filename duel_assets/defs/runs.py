"""Runs whose process is gone: each run records the process that executes it (tags ``duel/pid``,
``duel/host``, ``duel/started``); a run not finished whose process of this host has ended (kill -9,
OOM, a crash) is marked failed — by every duel-assets command at its start and by
``dead_run_sensor`` in the daemon — so it no longer holds a place in the run queue or blocks
``duel-assets forget``."""
from __future__ import annotations

import dagster as dg

from duel_assets.lib.processes import gone, identity

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


@dg.sensor(name="dead_run_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Marks failed the runs not finished whose process (recorded in the tags duel/pid, duel/host) "
                       "has ended on this host: a kill -9, an OOM kill or a crash no longer holds a place in the run "
                       "queue.")
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    lines = fail_dead_runs(context.instance)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason(f"{len(lines)} run(s) whose process is gone marked failed")
