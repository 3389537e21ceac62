"""`duel-assets forget K`: remove a partition — its registration, its runs and their events, its rows
in every table of the warehouse, its files (prompt file, exports, report summaries, SFT shards,
PR-record cache)."""
from __future__ import annotations

from duel_assets.cli.common import close_matches, errors_out, instance, registered
from duel_assets.lib.forget import files_of, partition_rows, remove_files
from duel_assets.lib.settings import ConfigError, Paths, load_config, validate_partition_key

_BUSY = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def _runs(inst, key: str, busy: bool = False) -> list[str]:
    """The partition's runs (tag ``dagster/partition``); with ``busy``, those queued or in progress."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[s] for s in _BUSY] if busy else None
    return inst.get_run_ids(filters=dg.RunsFilter(tags={"dagster/partition": key}, statuses=statuses))


def _rewrite_report(paths: Paths, keys: list[str]) -> str:
    """report.md and the dataset card over the partitions that remain."""
    if not paths.report.exists():
        return ""
    from duel_assets.lib.export.report import write_report
    from duel_assets.lib.settings import env

    try:
        cfg, mode = load_config(), env.duel_mode()
    except ConfigError as e:
        return f"report.md not rewritten (configuration: {e.errors[0]})"
    write_report(paths, keys, cfg, mode)
    return f"report.md and the export's card rewritten over {len(keys)} partitions"


def cmd_forget(args) -> int:
    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.partitions import PROMPT_FILES
    from duel_assets.defs.runs import forget_runs

    keys = [validate_partition_key(k) for k in dict.fromkeys(args.partition)]
    from duel_assets.lib.warehouse import Warehouse

    paths = Paths.from_env()
    warehouse = Warehouse.from_env(paths.home)
    inst = instance(paths)
    known = set(registered(inst))
    problems, plan = [], {}
    for k in keys:
        files, rows = files_of(paths, k), partition_rows(warehouse, k)
        if k not in known and not files and not any(rows.values()) and not _runs(inst, k):
            problems.append(f"{k}: no such partition, and no row, file or run of it (close matches: {close_matches(k, known)})")
        elif busy := _runs(inst, k, busy=True):
            problems.append(f"{k}: {len(busy)} run(s) of it are queued or running ({', '.join(busy[:3])}); "
                            "let them finish or terminate them first")
        plan[k] = (files, rows)
    if problems:
        return errors_out(problems)
    for k, (files, rows) in plan.items():
        n_rows = sum(rows.values())
        if args.dry_run:
            print(f"{k}: would remove {n_rows} rows in {sum(1 for n in rows.values() if n)} tables, "
                  f"{len(files)} files, {len(_runs(inst, k))} run(s){', its registration' if k in known else ''}")
            for f in files:
                print(f"  {f}")
            continue
        removed = remove_files(paths, k)
        partition_rows(warehouse, k, delete=True)
        if k in known:
            inst.delete_dynamic_partition(PROMPT_FILES, k)
        history = forget_runs(inst, k, {key for a in ALL_ASSETS for key in a.keys})
        print(f"{k}: removed {n_rows} rows ({', '.join(f'{t} {n}' for t, n in rows.items() if n) or 'none'}), "
              f"{len(removed)} files{', its registration' if k in known else ''}; {history}")
    if not args.dry_run:
        note = _rewrite_report(paths, registered(inst))
        if note:
            print(note)
    return 0
