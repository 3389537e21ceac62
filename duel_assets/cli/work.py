"""`duel-assets sample` and `duel-assets demo`."""
from __future__ import annotations

import argparse
import os
from importlib import resources

from duel_assets.cli.common import instance, register_partitions
from duel_assets.lib.settings import Paths
from duel_assets.lib.settings.preflight import validate_for_work


def cmd_sample(args) -> int:
    from duel_assets.lib.files import write_json_atomic
    from duel_assets.lib.sampling import numbered_keys, sample_for_key

    cfg = validate_for_work()
    paths = Paths.from_env().ensure()
    if args.per_file:
        cfg.sampling.turns_per_file = args.per_file
    total = args.prompts or cfg.sampling.prompts
    pools: dict = {}  # whole-source pools, read once for all files
    keys = numbered_keys(total, cfg.sampling.turns_per_file, args.stem)
    skipped: dict = {}
    for k in keys:
        f = paths.prompt_file(k)
        if f.exists() and not args.force:
            print(f"kept     {f} (exists; --force to resample)")
            continue
        payload = sample_for_key(k, cfg, pools, paths.home / "cache" / "line_index")
        write_json_atomic(f, payload)
        skipped = payload["skipped"]
        print(f"sampled  {f} ({len(payload['turns'])} turns; {payload['rows_read']} rows read)")
    if skipped:
        print(f"skipped source records: {skipped}")
    new = register_partitions(instance(paths), keys)
    print(f"{len(keys)} prompt files, {len(new)} newly registered as partitions")
    return 0


def demo_config() -> str:
    return str(resources.files("duel_assets") / "data" / "demo_chain.toml")


def cmd_demo(args) -> int:
    from duel_assets.cli.run import cmd_run
    from duel_assets.lib.standin import StandinServer

    os.environ["DUEL_CONFIG"] = args.config or demo_config()
    validate_for_work()
    paths = Paths.from_env().ensure()
    with StandinServer() as srv:
        os.environ["LLM_BASE_URL"] = srv.base_url
        os.environ["LLM_API_KEY"] = "standin-demo-key"
        print(f"duel-assets demo: DUEL_HOME={paths.home}")
        print(f"using the OFFLINE STAND-IN at {srv.base_url}: its answers and verdicts are NOT from a model")
        rc = cmd_sample(argparse.Namespace(prompts=None, per_file=None, stem="prompts", force=False))
        if rc == 0:
            rc = cmd_run(argparse.Namespace(partition=None, sample_new=False, resample=False))
    print()
    print(f"report:    {paths.report}")
    print(f"warehouse: {paths.warehouse} (schema duel)")
    print(f"exports:   {paths.home}/{{final,refined,defeat}}/")
    print(f"Dagster instance: {paths.dagster_home} (`make ui` shows these runs)")
    return rc
