"""`duel-assets`: what the Dagster CLI cannot do in one step (demo, sample, run, standin, ui, bench).

Runs go to the persistent instance at $DAGSTER_HOME (default $DUEL_HOME/dagster_home), so the UI
shows them; the command exits non-zero when any materialization fails.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

DAGSTER_YAML = """\
# Written by duel-assets. The DuckDB warehouse takes one writer at a time: the IO manager retries
# on the lock, and the run queue keeps the number of runs writing at once small.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
"""


def ensure_dagster_home() -> Path:
    from duel_assets.lib.settings import Paths

    home = Paths.from_env().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance():
    ensure_dagster_home()
    from dagster import DagsterInstance

    return DagsterInstance.get()


def register_partitions(instance, keys: list[str]) -> list[str]:
    from duel_assets.defs.partitions import prompt_files

    known = set(instance.get_dynamic_partitions(prompt_files.name))
    new = [k for k in dict.fromkeys(keys) if k not in known]
    if new:
        instance.add_dynamic_partitions(prompt_files.name, new)
    return new


def cmd_sample(args) -> int:
    from duel_assets.lib.files import write_json_atomic
    from duel_assets.lib.sampling import numbered_keys, sample_for_key
    from duel_assets.lib.settings import Paths, load_config

    paths = Paths.from_env().ensure()
    cfg = load_config()
    per_file = args.per_file or cfg.sampling.turns_per_file
    cfg.sampling.turns_per_file = min(per_file, 200)
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
    new = register_partitions(_instance(), keys)
    print(f"{len(keys)} prompt files, {len(new)} newly registered as partitions")
    return 0


def cmd_run(args) -> int:
    import dagster as dg
    from tqdm import tqdm

    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.partitions import prompt_files
    from duel_assets.defs.resources import build_resources
    from duel_assets.lib.llm import require_endpoint
    from duel_assets.lib.settings import ConfigError, Paths, resolve_endpoint, validate_partition_key
    from duel_assets.lib.watch import scan_prompt_dir

    paths = Paths.from_env().ensure()
    try:
        ep = require_endpoint(resolve_endpoint())
        for k in args.partition or []:
            validate_partition_key(k)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"LLM endpoint: {ep.base_url} (from {ep.source}_BASE_URL)")
    instance = _instance()
    on_disk, refused = scan_prompt_dir(paths.prompt_dir)
    for name in refused:
        print(f"ignoring prompt file {name!r}: keys may use only [A-Za-z0-9._-]", file=sys.stderr)
    register_partitions(instance, on_disk + list(args.partition or []))
    targets = list(args.partition or instance.get_dynamic_partitions(prompt_files.name))
    if not targets:
        print("nothing to run: no prompt files in", paths.prompt_dir, "- try `duel-assets sample --prompts 400`")
        return 1
    os.environ.setdefault("DUEL_PROGRESS", "1")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    failed = []
    for key in tqdm(targets, desc="partitions", unit="partition", file=sys.stderr):
        result = dg.materialize(ALL_ASSETS, partition_key=key, instance=instance, resources=build_resources(),
                                run_config=quiet, raise_on_error=False, tags={"duel/launched_by": "duel-assets run"})
        if not result.success:
            failed.append(key)
            for ev in result.all_events:
                if ev.is_step_failure:
                    print(f"[{key}] {ev.step_key} failed: {ev.event_specific_data.error.message.strip()[:400]}", file=sys.stderr)
    print(f"materialized {len(targets) - len(failed)}/{len(targets)} partitions; warehouse {paths.warehouse}")
    from duel_assets.defs.report import duel_report

    report = dg.materialize([duel_report], instance=instance, resources=build_resources(), run_config=quiet,
                            raise_on_error=False, tags={"duel/launched_by": "duel-assets run"})
    if not report.success:
        for ev in report.all_events:
            if ev.is_step_failure:
                print(f"duel_report failed: {ev.event_specific_data.error.message.strip()[:400]}", file=sys.stderr)
    print(f"report: {paths.report}")
    if failed:
        print(f"failed partitions: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or not report.success else 0


def _demo_config() -> str:
    return str(resources.files("duel_assets") / "data" / "demo_chain.toml")


def cmd_demo(args) -> int:
    from duel_assets.lib.settings import Paths
    from duel_assets.lib.standin import StandinServer

    os.environ["DUEL_CONFIG"] = args.config or _demo_config()
    paths = Paths.from_env().ensure()
    with StandinServer() as srv:
        os.environ["LLM_BASE_URL"] = srv.base_url
        os.environ["LLM_API_KEY"] = "standin-demo-key"
        print(f"duel-assets demo: DUEL_HOME={paths.home}")
        print(f"using the OFFLINE STAND-IN at {srv.base_url}: its answers and verdicts are NOT from a model")
        rc = cmd_sample(argparse.Namespace(prompts=None, per_file=None, stem="prompts", force=False))
        if rc == 0:
            rc = cmd_run(argparse.Namespace(partition=None))
    print()
    print(f"report:    {paths.report}")
    print(f"warehouse: {paths.warehouse} (schema duel)")
    print(f"exports:   {paths.home}/{{final,refined,defeat}}/")
    print(f"Dagster instance: {os.environ.get('DAGSTER_HOME')} (`make ui` shows these runs)")
    return rc


def cmd_standin(args) -> int:
    from duel_assets.lib.standin import serve_forever

    faults = tuple(args.faults.split(",")) if args.faults else ()
    kwargs = dict(latency_ms=args.latency_ms, fault_rate=args.fault_rate)
    if faults:
        kwargs["faults"] = faults
    serve_forever(args.port, **kwargs)
    return 0


def cmd_ui(args) -> int:
    from duel_assets.lib.settings import Paths, resolve_endpoint

    paths = Paths.from_env().ensure()
    home = ensure_dagster_home()
    env = dict(os.environ, DUEL_HOME=str(paths.home), DAGSTER_HOME=str(home))
    srv = None
    if resolve_endpoint() is None:
        from duel_assets.lib.standin import StandinServer

        srv = StandinServer(port=args.standin_port).start()
        env["LLM_BASE_URL"], env["LLM_API_KEY"] = srv.base_url, "standin-ui-key"
        print(f"no LLM endpoint configured: runs will use the OFFLINE STAND-IN at {srv.base_url} (NOT a model).")
        print("Set LLM_BASE_URL and LLM_API_KEY to use a real provider.")
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    root = Path(__file__).resolve().parents[1]
    cmd = [dagster, "dev", "-w", str(root / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port}  (DAGSTER_HOME={home})")
    try:
        return subprocess.call(cmd, env=env, cwd=root)
    except KeyboardInterrupt:
        return 0
    finally:
        if srv:
            srv.stop()


def cmd_bench(args) -> int:
    from duel_assets.bench import main as bench_main

    return bench_main(as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="duel-assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="whole graph on the bundled samples against the offline stand-in")
    d.add_argument("--config", help="chain.toml to use instead of the bundled demo config")
    d.set_defaults(fn=cmd_demo)
    s = sub.add_parser("sample", help="sample N turns into prompt files of <= 200 and register them")
    s.add_argument("--prompts", type=int, help="number of turns (default: sampling.prompts)")
    s.add_argument("--per-file", type=int, help="turns per prompt file (default: sampling.turns_per_file, max 200)")
    s.add_argument("--stem", default="prompts", help="file name stem (files are <stem>_<N>_<i>.json)")
    s.add_argument("--force", action="store_true", help="resample files that already exist")
    s.set_defaults(fn=cmd_sample)
    r = sub.add_parser("run", help="register new prompt files and materialize the whole graph")
    r.add_argument("--partition", action="append", help="partition key (repeatable; default: all)")
    r.set_defaults(fn=cmd_run)
    st = sub.add_parser("standin", help="serve the offline stand-in (not a model) on 127.0.0.1")
    st.add_argument("--port", type=int, default=8765)
    st.add_argument("--latency-ms", type=float, default=0.0)
    st.add_argument("--fault-rate", type=float, default=0.0)
    st.add_argument("--faults", help="comma-separated kinds among 429,500,timeout,garbage (default: all)")
    st.set_defaults(fn=cmd_standin)
    u = sub.add_parser("ui", help="Dagster UI + daemon (dagster dev) on 127.0.0.1 with DAGSTER_HOME under DUEL_HOME")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.add_argument("--standin-port", type=int, default=8765)
    u.set_defaults(fn=cmd_ui)
    b = sub.add_parser("bench", help="run the benchmarks and print ratios")
    b.add_argument("--json", action="store_true")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
