"""`duel-assets run`: register new prompt files, then materialize the whole graph per partition."""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from duel_assets.cli.common import (
    close_matches,
    errors_out,
    exception_text,
    instance,
    interrupted,
    register_partitions,
    registered,
    underlying_error,
)
from duel_assets.lib.settings import ConfigError, Paths, endpoints, load_config, mask_url, validate_partition_key
from duel_assets.lib.settings.preflight import validate_for_work


def unknown_partitions(keys: list[str], known: set[str], paths: Paths) -> list[str]:
    """One error line per requested key that has neither a prompt file nor a registration."""
    return [f"--partition {k}: no prompt file {paths.prompt_file(k)} and no registered partition {k} "
            f"(close matches: {close_matches(k, known)}); pass --sample-new to sample it from the configured "
            "sources, knowing that its LLM calls are paid for"
            for k in keys if k not in known]


NOTHING = 3  # exit status: every step succeeded, but a partition (or `sample`) delivered nothing


def missing_key_var(source: str) -> str:
    """The key variable of the family that chose the endpoint (``LLM_BASE_URL`` -> ``LLM_API_KEY``)."""
    return source.split("_BASE_URL")[0] + "_API_KEY" if "_BASE_URL" in source else "LLM_API_KEY"


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

    from duel_assets.lib.calls import require_endpoint
    from duel_assets.lib.watch import scan_prompt_dir

    try:
        cfg = load_config()
        used = endpoints.resolve_used(cfg)
    except ConfigError as e:
        return errors_out(e.errors)
    paths = Paths.from_env().ensure()
    for name, found in used.items():
        ep = require_endpoint(found)
        roles = "" if list(used) == [endpoints.DEFAULT] else f" [{name}: {', '.join(endpoints.roles_of(cfg, name))}]"
        print(f"LLM endpoint{roles}: {mask_url(ep.base_url)} (from {ep.source})")
        if not ep.api_key and not getattr(args, "no_report", False):  # once: not again in each --parallel process
            spec = cfg.endpoints.get(name)
            var = (spec.api_key_env or f"api_key_env of [endpoints.{name}]") if spec else missing_key_var(ep.source)
            print(f"warning: {ep.source} is set and no API key is: requests are sent without one (fine for the "
                  f"stand-in or a local server; a provider answers 401). Set {var}.", file=sys.stderr)
    inst = instance(paths)
    on_disk, refused = scan_prompt_dir(paths.prompt_dir)
    for name in refused:
        print(f"ignoring prompt file {name}", file=sys.stderr)
    problems = unknown_partitions(keys, set(registered(inst)) | set(on_disk), paths)
    if problems and not args.sample_new:
        return errors_out(problems)
    if getattr(args, "estimate", False):  # what it would cost, and stop (nothing registered, nothing sent)
        from duel_assets.cli.estimate import print_estimate

        return print_estimate(keys or sorted(set(registered(inst)) | set(on_disk)), paths)
    register_partitions(inst, on_disk + keys)
    targets = keys or registered(inst)
    if not targets:
        print("nothing to run: no prompt files in", paths.prompt_dir, "- try `duel-assets sample --prompts 400`")
        return 1
    return materialize_all(inst, targets, paths, resample=args.resample, parallel=args.parallel,
                           report=not getattr(args, "no_report", False))


def _one(key: str, inst, tags: dict, quiet: dict) -> list[str]:
    """Materialize one partition's graph; the failure lines it produced (none when it succeeded)."""
    import dagster as dg

    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.resources import build_resources

    try:
        result = dg.materialize(ALL_ASSETS, partition_key=key, instance=inst, resources=build_resources(),
                                run_config=quiet, raise_on_error=False, tags=tags)
    except Exception as e:  # the run itself could not be recorded or started (a full disk, ...)
        return [f"[{key}] run failed: {exception_text(e)}"]
    if interrupted(result):  # SIGINT / SIGTERM: stop here, start nothing else
        raise KeyboardInterrupt
    if result.success:
        from duel_assets.cli.calls import refusal_lines

        for line in refusal_lines(result, key):  # calls that failed without failing the step
            print(line, file=sys.stderr)
        return []
    return [f"[{key}] {ev.step_key} failed: {underlying_error(ev.step_failure_data.error)}"
            for ev in result.all_events if ev.is_step_failure] or [f"[{key}] run failed"]


def _in_children(targets: list[str], parallel: int, resample: bool, paths: Paths) -> dict[str, list[str]]:
    """Each partition in its own ``duel-assets run --partition K`` process, ``parallel`` at a time
    (Dagster's in-process execution is not thread-safe); a child gets SIGTERM when this process ends. The bar counts partitions, and the calls
    completed and in flight in the deployment's call store. Returns the failure lines of each
    failed partition."""
    import subprocess

    from tqdm import tqdm

    from duel_assets.lib.calls.store_pg import open_store
    from duel_assets.lib.system.processes import guarded

    store = open_store(paths.call_cache)
    calls_before = store.count()

    env = {**os.environ, "DUEL_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "duel_assets.cli", "run", "--parallel", "1", "--no-report"] + (["--resample"] if resample else [])
    queue = list(targets)
    running: dict[str, subprocess.Popen[str]] = {}
    failed: dict[str, list[str]] = {}
    bar = tqdm(total=len(targets), desc="partitions", unit="partition", file=sys.stderr)
    while queue or running:
        while queue and len(running) < parallel:
            key = queue.pop(0)
            running[key] = subprocess.Popen(guarded([*cmd, "--partition", key]), env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
        for key, proc in list(running.items()):
            if proc.poll() is None:
                continue
            err = proc.stderr.read() if proc.stderr else ""
            if proc.returncode in (0, NOTHING):  # it ran (NOTHING: its summary says what it dueled): its lines
                for line in (ln for ln in err.splitlines() if ln.startswith(f"[{key}]")):  # about calls that failed
                    bar.write(line, file=sys.stderr)
            else:
                failed[key] = [ln for ln in err.splitlines() if ln.startswith(f"[{key}]")] or [f"[{key}] run failed (exit {proc.returncode})"]
                for line in failed[key]:
                    bar.write(line, file=sys.stderr)
            del running[key]
            bar.update(1)
        bar.set_postfix(calls_done=store.count() - calls_before, in_flight=store.in_flight(), failed_partitions=len(failed))
        time.sleep(0.5)
    bar.close()
    store.close()
    return failed


def materialize_all(inst, targets: list[str], paths: Paths, resample: bool = False, parallel: int = 2,
                    report: bool = True) -> int:
    """The graph for every target partition, ``parallel`` partitions at a time (each in its own
    process): one partition's start-up and verdict steps run while another's LLM calls are in
    flight. The calls of all of them share the deployment's concurrency bound and rate limits (the
    call store's flight rules), so overlapping partitions never sends more than one partition alone
    could. Then ``duel_report``, once."""
    from duel_assets.defs.runs import process_tags

    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # failures: summarized below
    if parallel > 1 and len(targets) > 1:
        failed = _in_children(targets, parallel, resample, paths)
    else:
        os.environ.setdefault("DUEL_PROGRESS", "1")  # the call layer's bar: calls done / total per stage
        tags = {"duel/launched_by": "duel-assets run", **process_tags(), **({"duel/resample": "true"} if resample else {})}
        failed = {}
        for key in targets:
            lines = _one(key, inst, tags, quiet)
            if lines:
                failed[key] = lines
                for line in lines:
                    print(line, file=sys.stderr)
    from duel_assets.lib.export.outcome import run_outcome

    lines, nothing = run_outcome(paths, [k for k in targets if k not in failed])
    for line in lines:
        print(line)
    print(f"materialized {len(targets) - len(failed)}/{len(targets)} partitions; warehouse {mask_url(str(paths.warehouse))}")
    ok = _report(inst, paths, quiet) if report else True
    for line in nothing:
        print(f"error: {line}", file=sys.stderr)
    if failed:
        print(f"failed partitions: {', '.join(sorted(failed))}", file=sys.stderr)
    return 1 if failed or not ok else NOTHING if nothing else 0


def _report(inst, paths: Paths, quiet: dict) -> bool:
    """``duel_report`` once, then its gate over all partitions, the export and where they are."""
    import dagster as dg

    from duel_assets.defs.report import duel_report
    from duel_assets.defs.resources import build_resources
    from duel_assets.defs.runs import process_tags

    try:
        done = dg.materialize([duel_report], instance=inst, resources=build_resources(), run_config=quiet,
                              raise_on_error=False, tags={"duel/launched_by": "duel-assets run", **process_tags()})
    except Exception as e:  # the run itself could not be recorded or started
        print(f"duel_report run failed: {exception_text(e)}", file=sys.stderr)
        return False
    if interrupted(done):  # SIGINT / SIGTERM while the report ran
        raise KeyboardInterrupt
    if not done.success:
        for ev in done.all_events:
            if ev.is_step_failure:
                print(f"duel_report failed: {underlying_error(ev.step_failure_data.error)}", file=sys.stderr)
        return False
    md: dict[str, Any] = {k: v.value for k, v in done.asset_materializations_for_node("duel_report")[0].metadata.items()}
    g = md["gate_all_partitions_figures"]
    print(f"all partitions: gate {g['verdict']}" + (f" ({'; '.join(g['reasons'])})" if g["reasons"] else ""))
    left_out = md["sft_partitions_excluded"]
    print(f"export: {md['sft_rows']} rows from {md['sft_partitions_included']} partitions in {paths.export_dir}"
          + (f"; left out: {', '.join(f'{k} ({why})' for k, why in list(left_out.items())[:5])}"
             + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "") if left_out else ""))
    print(f"report: {paths.report}")
    return True
