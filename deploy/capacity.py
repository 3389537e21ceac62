"""Capacity of a deployment: measure one worker against the stand-in, project a large job.

    python deploy/capacity.py measure --latency-ms 2000 --concurrency 32 --partitions 3
    python deploy/capacity.py project --turns 1000000 --workers 1 4 16 64 --latency-s 2 \
        --concurrency 32 --judges 1 --overhead-s 12 [--rpm 0]

`measure` starts `duel-assets standin --latency-ms L` (every reply takes L from arrival, as a
provider's latency does), samples N prompt files of 200 turns from variants of the bundled
trajectories, and times one worker (`duel-assets run`, one process) over them: partitions per hour
and, per partition, the time beyond the Little's-law floor calls x L / C (the worker's overhead:
process start, sampling, reads and writes, scoring).

`project` turns a measured overhead into the wall time and call count of a large job: W workers,
each taking whole partitions of 200 turns; every partition needs turns x (2 + 2 x judges) calls
(king, challenger, each judge in both orders), plus a fraction of retried calls; a worker runs C
calls at once; a provider limit of R requests per minute bounds the whole deployment.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TURNS_PER_PARTITION = 200


def calls_per_turn(judges: int) -> int:
    return 2 + 2 * judges


def project(turns: int, workers: int, latency_s: float, concurrency: int, judges: int, overhead_s: float,
            rpm: float = 0.0, retry_fraction: float = 0.0) -> dict:
    """Wall time of ``turns`` turns on ``workers`` workers; partitions are dealt out whole."""
    partitions = math.ceil(turns / TURNS_PER_PARTITION)
    calls_per_partition = TURNS_PER_PARTITION * calls_per_turn(judges) * (1 + retry_fraction)
    per_partition_s = overhead_s + calls_per_partition * latency_s / concurrency
    if rpm:  # the deployment's share of the provider limit, split among the workers
        per_partition_s = max(per_partition_s, overhead_s + calls_per_partition / (rpm / 60 / workers))
    rounds = math.ceil(partitions / workers)  # the slowest worker takes this many partitions
    wall_s = rounds * per_partition_s
    return {"turns": turns, "partitions": partitions, "workers": workers, "calls": round(partitions * calls_per_partition),
            "per_partition_s": round(per_partition_s, 1), "partitions_per_hour_per_worker": round(3600 / per_partition_s, 1),
            "wall_hours": round(wall_s / 3600, 2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(latency_ms: float, concurrency: int, partitions: int, judges: int, keep: bool) -> dict:
    exe = Path(sys.executable).parent / "duel-assets"
    tmp = Path(tempfile.mkdtemp(prefix="duel-capacity-"))
    port = _free_port()
    standin = subprocess.Popen([str(exe), "standin", "--port", str(port), "--latency-ms", str(latency_ms)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from duel_assets.bench import bench_source

        source = bench_source(tmp, TURNS_PER_PARTITION * partitions)
        cfg = tmp / "chain.toml"
        panel = ", ".join(f'"standin-judge-{j + 1}"' for j in range(judges))
        cfg.write_text(f'[[sources]]\nformat = "swe_zero"\npath = "{source}"\n\n[sampling]\nturns_per_file = 200\n'
                       f'seed = 5\n\n[generation]\nmodel = "standin-generator"\n\n[judges]\nmodels = [{panel}]\n\n'
                       f"[calls]\nconcurrency = {concurrency}\ntimeout_s = {max(30, 4 * latency_ms / 1000):.0f}\n")
        home = tmp / "home"
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
        env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), DUEL_CONFIG=str(cfg),
                   LLM_BASE_URL=f"http://127.0.0.1:{port}/v1", LLM_API_KEY="capacity", DUEL_PROGRESS="0")
        env.pop("DUEL_WAREHOUSE", None)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_standin/log", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        subprocess.run([str(exe), "sample", "--prompts", str(TURNS_PER_PARTITION * partitions)], env=env, check=True,
                       capture_output=True)
        t0 = time.monotonic()
        subprocess.run([str(exe), "run"], env=env, check=True, capture_output=True)
        wall = time.monotonic() - t0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_standin/log", timeout=30) as r:
            calls = len(json.loads(r.read())["log"])
        floor = calls * latency_ms / 1000 / concurrency
        return {"latency_ms": latency_ms, "concurrency": concurrency, "judges": judges, "partitions": partitions,
                "turns_per_partition": TURNS_PER_PARTITION, "calls": calls, "wall_s": round(wall, 1),
                "per_partition_s": round(wall / partitions, 1),
                "partitions_per_hour_per_worker": round(3600 * partitions / wall, 1),
                "littles_law_floor_s": round(floor, 1), "overhead_per_partition_s": round((wall - floor) / partitions, 1),
                "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1)}
    finally:
        standin.terminate()
        standin.wait(timeout=30)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="one worker against the stand-in")
    m.add_argument("--latency-ms", type=float, default=2000)
    m.add_argument("--concurrency", type=int, default=32)
    m.add_argument("--partitions", type=int, default=3)
    m.add_argument("--judges", type=int, default=1)
    m.add_argument("--keep", action="store_true", help="keep the temporary DUEL_HOME")
    j = sub.add_parser("project", help="wall time and calls of a large job")
    j.add_argument("--turns", type=int, default=1_000_000)
    j.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64])
    j.add_argument("--latency-s", type=float, default=2.0)
    j.add_argument("--concurrency", type=int, default=32)
    j.add_argument("--judges", type=int, default=1)
    j.add_argument("--overhead-s", type=float, required=True, help="per-partition overhead measured by `measure`")
    j.add_argument("--rpm", type=float, default=0.0, help="provider limit, requests per minute (0: none)")
    j.add_argument("--retry-fraction", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.cmd == "measure":
        print(json.dumps(measure(a.latency_ms, a.concurrency, a.partitions, a.judges, a.keep), indent=2))
        return 0
    print("| workers | partitions | calls | per partition | partitions/h/worker | wall time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for w in a.workers:
        r = project(a.turns, w, a.latency_s, a.concurrency, a.judges, a.overhead_s, a.rpm, a.retry_fraction)
        print(f"| {w} | {r['partitions']:,} | {r['calls']:,} | {r['per_partition_s']} s | "
              f"{r['partitions_per_hour_per_worker']} | {r['wall_hours']} h |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
