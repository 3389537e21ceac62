"""`duel-assets run`: register new prompt files, then materialize the whole graph per partition."""
from __future__ import annotations

import os
import sys

from duel_assets.cli.common import (close_matches, errors_out, exception_text, instance, register_partitions,
                                    registered, underlying_error)
from duel_assets.lib.settings import ConfigError, Paths, mask_url, resolve_endpoint, validate_partition_key
from duel_assets.lib.settings.preflight import validate_for_work


def unknown_partitions(keys: list[str], known: set[str], paths: Paths) -> list[str]:
    """One error line per requested key that has neither a prompt file nor a registration."""
    return [f"--partition {k}: no prompt file {paths.prompt_file(k)} and no registered partition {k} "
            f"(close matches: {close_matches(k, known)}); pass --sample-new to sample it from the configured "
            "sources, knowing that its LLM calls are paid for"
            for k in keys if k not in known]


def cmd_run(args) -> int:
    keys = list(dict.fromkeys(args.partition or []))
    problems = []  # every refusal at once, before anything is touched
    for check in [validate_for_work] + [lambda k=k: validate_partition_key(k) for k in keys]:
        try:
            check()
        except ConfigError as e:
            problems += e.errors
    if problems:
        return errors_out(problems)

    from duel_assets.lib.llm import require_endpoint
    from duel_assets.lib.watch import scan_prompt_dir

    ep = require_endpoint(resolve_endpoint())
    paths = Paths.from_env().ensure()
    print(f"LLM endpoint: {mask_url(ep.base_url)} (from {ep.source})")
    inst = instance(paths)
    on_disk, refused = scan_prompt_dir(paths.prompt_dir)
    for name in refused:
        print(f"ignoring prompt file {name!r}: keys may use only [A-Za-z0-9._-]", file=sys.stderr)
    problems = unknown_partitions(keys, set(registered(inst)) | set(on_disk), paths)
    if problems and not args.sample_new:
        return errors_out(problems)
    register_partitions(inst, on_disk + keys)
    targets = keys or registered(inst)
    if not targets:
        print("nothing to run: no prompt files in", paths.prompt_dir, "- try `duel-assets sample --prompts 400`")
        return 1
    return materialize_all(inst, targets, paths, resample=args.resample)


def materialize_all(inst, targets: list[str], paths: Paths, resample: bool = False) -> int:
    import dagster as dg
    from tqdm import tqdm

    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.resources import build_resources

    os.environ.setdefault("DUEL_PROGRESS", "1")  # the call layer's bar: calls done / total per stage
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # failures: summarized below
    tags = {"duel/launched_by": "duel-assets run"}
    if resample:
        tags["duel/resample"] = "true"
    failed = []
    bar = tqdm(targets, desc="partitions", unit="partition", file=sys.stderr, disable=len(targets) < 2)
    for key in bar:
        try:
            result = dg.materialize(ALL_ASSETS, partition_key=key, instance=inst, resources=build_resources(),
                                    run_config=quiet, raise_on_error=False, tags=tags)
        except Exception as e:  # the run itself could not be recorded or started (a full disk, ...)
            failed.append(key)
            print(f"[{key}] run failed: {exception_text(e)}", file=sys.stderr)
            continue
        if not result.success:
            failed.append(key)
            for ev in result.all_events:
                if ev.is_step_failure:
                    print(f"[{key}] {ev.step_key} failed: {underlying_error(ev.event_specific_data.error)}",
                          file=sys.stderr)
    print(f"materialized {len(targets) - len(failed)}/{len(targets)} partitions; warehouse {mask_url(str(paths.warehouse))}")
    print(f"report: {paths.report}")
    if failed:
        print(f"failed partitions: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
