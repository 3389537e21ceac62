"""`duel-assets sample` and `duel-assets demo`."""
from __future__ import annotations

import argparse
import os
from importlib import resources

from duel_assets.cli.common import instance, register_partitions
from duel_assets.lib.settings import Paths
from duel_assets.lib.settings.preflight import validate_for_work


def cmd_sample(args) -> int:
    """Sample prompt files from the configured sources. Windows never wrap around and skip
    histories another prompt file of this DUEL_HOME holds: it writes what exists and says how much
    of what was asked for it delivered."""
    import json

    from duel_assets.lib.prompt_store import sample_prompt_file
    from duel_assets.lib.sampling import NothingToSample, numbered_keys

    cfg = validate_for_work()
    paths = Paths.from_env().ensure()
    if args.per_file:
        cfg.sampling.turns_per_file = args.per_file
    total = args.prompts or cfg.sampling.prompts
    pools: dict = {}  # whole-source pools, read once for all files
    keys = numbered_keys(total, cfg.sampling.turns_per_file, args.stem)
    written, delivered, skipped, stop = [], 0, {}, ""
    for k in keys:
        f = paths.prompt_file(k)
        if f.exists() and not args.force:
            try:
                n = len(json.loads(f.read_text(encoding="utf-8")).get("turns") or [])
            except (OSError, ValueError, AttributeError):
                n = 0
            delivered += n
            written.append(k)
            print(f"kept     {f} ({n} turns; exists; --force to resample)")
            continue
        try:
            payload = sample_prompt_file(paths.home, f, k, cfg, pools, paths.cache_dir, resample=args.force)
        except NothingToSample as e:
            stop = str(e)
            break
        written.append(k)
        delivered += len(payload["turns"])
        skipped = payload["skipped"]
        print(f"sampled  {f} ({len(payload['turns'])} turns; {payload['rows_read']} rows read)")
    if skipped:
        print(f"skipped source records: {skipped}")
    print(f"requested {total} turns; delivered {delivered}; shortfall {total - delivered}")
    if stop:
        print(f"the sources hold no more unused turns ({len(keys) - len(written)} of {len(keys)} files not written): {stop}")
    new = register_partitions(instance(paths), written)
    print(f"{len(written)} prompt files, {len(new)} newly registered as partitions")
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
            rc = cmd_run(argparse.Namespace(partition=None, sample_new=False, resample=False, parallel=2, no_report=False))
    print()
    print(f"report:    {paths.report}")
    print(f"warehouse: {paths.warehouse} (schema duel)")
    print(f"exports:   {paths.home}/{{final,refined,defeat}}/")
    print(f"Dagster instance: {paths.dagster_home} (`make ui` shows these runs)")
    return rc
