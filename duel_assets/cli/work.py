"""`duel-assets sample` and `duel-assets demo`."""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

from duel_assets.cli.common import instance, register_partitions
from duel_assets.cli.run import NOTHING
from duel_assets.lib.settings import Paths
from duel_assets.lib.settings.preflight import validate_for_work


def _counts(c) -> str:
    return f"{sum(c.values())}: " + ", ".join(f"{r} {n}" for r, n in sorted(c.items()))


def cmd_sample(args) -> int:
    return sample_files(args)[0]


def sample_files(args) -> tuple[int, list[str]]:
    """Sample prompt files from the configured sources. Windows never wrap around and skip
    histories another prompt file of this DUEL_HOME holds: it writes what exists and says how much
    of what was asked for it delivered. Returns (exit status, the keys written or kept)."""
    import json

    from duel_assets.lib.sampling.prompt_store import sample_prompt_file
    from duel_assets.lib.sampling.sampler import NothingToSample
    from duel_assets.lib.sampling.windows import numbered_keys

    cfg = validate_for_work()
    paths = Paths.from_env().ensure()
    if args.per_file:
        cfg.sampling.turns_per_file = args.per_file
    total = args.prompts or cfg.sampling.prompts
    pools: dict = {}  # whole-source pools, read once for all files
    keys = numbered_keys(total, cfg.sampling.turns_per_file, args.stem)
    written: list[str] = []
    delivered, skipped, stop = 0, Counter[str](), ""
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
        skipped.update(payload["skipped"])
        why = f"; skipped {_counts(payload['skipped'])}" if payload["skipped"] else ""
        print(f"sampled  {f} ({len(payload['turns'])} turns; {payload['rows_read']} rows read{why})")
    if "duplicate_history" in skipped:
        print("(duplicate_history: a step whose history, the chat so far, another prompt file of this DUEL_HOME or "
              "another step sampled here already holds, as rollouts of one task share their first steps; each "
              "history is dueled once)")
    print(f"requested {total} turns; delivered {delivered}; shortfall {total - delivered}")
    if stop:
        print(f"the sources hold no more unused turns ({len(keys) - len(written)} of {len(keys)} files not written): {stop}")
    new = register_partitions(instance(paths), written)
    print(f"{len(written)} prompt files, {len(new)} newly registered as partitions")
    if not delivered:
        print("error: sample delivered no turn: every history of the configured sources is already in a prompt "
              f"file of {paths.home} (or was skipped); configure more [[sources]] or another DUEL_HOME", file=sys.stderr)
        return NOTHING, written
    return 0, written


DEMO_STEM = "demo"  # the demo's prompt files: demo_<N>_<i>.json


def demo_config() -> str:
    return str(resources.files("duel_assets") / "data" / "demo_chain.toml")


def demo_environment(home: Path, config: str) -> dict[str, str]:
    """Everything the demo writes, under ``home``: set explicitly, so that neither the environment nor
    ``.env`` (which `run`'s worker processes load again) can point it at a user's warehouse, call
    store or Dagster instance."""
    return {"DUEL_HOME": str(home), "DUEL_CONFIG": config, "DUEL_WAREHOUSE": str(home / "warehouse.duckdb"),
            "DUEL_CALL_CACHE": str(home / "cache" / "llm_calls.sqlite"), "DAGSTER_HOME": str(home / "dagster_home")}


def cmd_demo(args) -> int:
    from duel_assets.cli.run import cmd_run
    from duel_assets.devtools.standin import StandinServer

    home = Path(args.home).expanduser().resolve() if args.home else Paths.from_env().home / "demo"
    foreign = sorted(f.name for f in (home / "prompt").glob("*.json") if not f.name.startswith(f"{DEMO_STEM}_"))
    if foreign:
        print(f"error: {home} holds prompt files the demo did not write ({', '.join(foreign[:5])}); the demo runs "
              "in a home of its own: give it (--home) an empty folder or an earlier demo's", file=sys.stderr)
        return 2
    env = demo_environment(home, str(Path(args.config).expanduser().resolve()) if args.config else demo_config())
    os.environ.update(env)
    validate_for_work()
    paths = Paths.from_env().ensure()
    with StandinServer() as srv:
        os.environ["LLM_BASE_URL"] = srv.base_url
        os.environ["LLM_API_KEY"] = "standin-demo-key"
        print(f"duel-assets demo: in a home of its own, {paths.home} (prompt files, warehouse, call store, Dagster "
              "instance, report, export); no other partition is read or written")
        print(f"using the OFFLINE STAND-IN at {srv.base_url}: its answers and verdicts are NOT from a model")
        rc, keys = sample_files(argparse.Namespace(prompts=None, per_file=None, stem=DEMO_STEM, force=False))
        if keys:  # the files written now, or kept from an earlier demo: only these are run
            rc = cmd_run(argparse.Namespace(partition=keys, sample_new=False, resample=False, parallel=2,
                                            no_report=False))
    print()
    print(f"demo home: {paths.home}")
    print(f"export:    {paths.export_dir}/ (its card README.md; datasets.load_dataset(\"{paths.export_dir}\") when it "
          "holds rows)")
    print(f"per turn:  {paths.home}/{{final,refined,defeat}}/<partition>/")
    print(f"warehouse: {paths.warehouse} (schema duel)")
    print(f"UI:        DUEL_HOME={paths.home} DAGSTER_HOME={env['DAGSTER_HOME']} DUEL_CONFIG={env['DUEL_CONFIG']} make ui")
    review = "make review-demo" if not args.home else f"DUEL_HOME={paths.home} DUEL_CONFIG={env['DUEL_CONFIG']} make review"
    print(f"review:    {review}  (the duels side by side, and labels for `calibrate`)")
    return rc
