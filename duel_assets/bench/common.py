"""What the benchmarks share: the stand-in in its own process, a source of distinct turns, configs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from duel_assets.devtools.ports import free_port

LATENCY_MS = 200.0
CONCURRENCY = 64
TURNS = 200
TRIALS = 3  # runs of the LLM stage; the median is reported
# USD per 1M tokens (an example price list; through the batch API at half the price)
PRICES = {"prompt": 0.60, "completion": 2.50, "cached_prompt": 0.15, "batch_prompt": 0.30, "batch_completion": 1.25,
          "batch_cached_prompt": 0.075}


@contextmanager
def standin_process(latency_ms: float, rpm: float = 0.0, tpm: float = 0.0):
    """The stand-in in its own process, so that its threads do not share our interpreter lock."""
    port = free_port()
    cmd = [sys.executable, "-m", "duel_assets.cli", "standin", "--port", str(port), "--latency-ms", str(latency_ms)]
    if rpm:
        cmd += ["--rpm", str(rpm)]
    if tpm:
        cmd += ["--tpm", str(tpm)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("stand-in did not start") from None
            time.sleep(0.1)
    try:
        yield base + "/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def standin_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.replace("/v1", "") + "/_standin/stats", timeout=30) as r:
        return json.loads(r.read())


def bench_source(tmp: Path, min_turns: int) -> Path:
    """Variants of the bundled trajectories (task text tagged per variant) with >= ``min_turns``
    turns of distinct visible histories."""
    from duel_assets.lib.sampling.sources import bundled_path

    rows = [json.loads(x) for x in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    out = tmp / "bench_source.jsonl"
    with out.open("w") as f:
        for v in range(max(1, -(-min_turns // 40) + 2)):
            for r in rows:
                msgs = [dict(m) for m in r["messages"]]
                msgs[1]["content"] += f"\n- Variant: {v}"
                f.write(json.dumps({**r, "messages": msgs}) + "\n")
    return out


def write_config(tmp: Path, source: Path, concurrency: int = CONCURRENCY, judges: tuple[str, ...] = ("standin-judge-1",),
                 turns: int = TURNS, skip_decided: bool = True) -> Path:
    cfg = tmp / "bench_chain.toml"
    panel = ", ".join(f'"{j}"' for j in judges)
    prices = "".join(f'\n[prices."{m}"]\n' + "".join(f"{k} = {v}\n" for k, v in PRICES.items())
                     for m in dict.fromkeys(("standin-generator", *judges)))
    cfg.write_text(f"""
[[sources]]
format = "swe_zero"
path = "{source}"

[sampling]
turns_per_file = {turns}
seed = 11

[generation]
model = "standin-generator"

[judges]
models = [{panel}]
skip_decided = {str(skip_decided).lower()}

[calls]
concurrency = {concurrency}
retry_budget = 3
timeout_s = 30
{prices}""")
    return cfg


def partition(tmp: Path, cfg_path: Path, key: str):
    """(config, turns, PR records by instance) of one sampled partition."""
    from duel_assets.lib.duel import steps
    from duel_assets.lib.sampling.pr_records import read_pr_records
    from duel_assets.lib.sampling.prompt_files import turn_from_record
    from duel_assets.lib.sampling.sampler import sample_for_key
    from duel_assets.lib.settings import load_config

    cfg = load_config(cfg_path)
    turns = [turn_from_record(t) for t in sample_for_key(key, cfg)["turns"]]
    prs = steps.pr_by_instance(read_pr_records(None, sorted({t.instance_id for t in turns})))
    return cfg, turns, prs
