"""`duel-assets bench`: figures measured in one run, printed as ratios (and as JSON with --json).

* LLM stage of one 200-turn partition (king + challenger + judges in both orders) against the
  stand-in with 200 ms latency at concurrency 64: wall time vs the Little's-law limit N*L/C, and vs
  sequential calls (per-call time measured on a sample at concurrency 1, times N);
* a warm re-run of the whole partition through Dagster (every call cached): model calls made and
  wall time vs the same run with the model stage skipped (answers served from memory);
* the bootstrap gate on 100k turns x 2,000 resamples.
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

LATENCY_MS = 200.0
CONCURRENCY = 64
TURNS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def standin_process(latency_ms: float):
    """The stand-in in its own process, so that its threads do not share our interpreter lock."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "duel_assets.cli", "standin", "--port", str(port),
                             "--latency-ms", str(latency_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def standin_requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url.replace("/v1", "") + "/_standin/log", timeout=30) as r:
        return len(json.loads(r.read())["log"])


def bench_source(tmp: Path, min_turns: int) -> Path:
    """Variants of the bundled trajectories (task text tagged per variant) with >= min_turns turns."""
    from duel_assets.lib.sources import bundled_path

    rows = [json.loads(l) for l in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    out = tmp / "bench_source.jsonl"
    with out.open("w") as f:
        for v in range(max(1, -(-min_turns // 80) + 1)):
            for r in rows:
                msgs = [dict(m) for m in r["messages"]]
                msgs[1]["content"] += f"\n- Variant: {v}"
                f.write(json.dumps({**r, "messages": msgs}) + "\n")
    return out


def _write_config(tmp: Path, source: Path, concurrency: int) -> Path:
    cfg = tmp / "bench_chain.toml"
    cfg.write_text(f"""
[[sources]]
format = "swe_zero"
path = "{source}"

[sampling]
turns_per_file = {TURNS}
seed = 11

[generation]
model = "standin-generator"

[judges]
models = ["standin-judge-1"]

[calls]
concurrency = {concurrency}
retry_budget = 3
timeout_s = 30
""")
    return cfg


def bench_llm_stage(tmp: Path) -> dict:
    from duel_assets.lib import duel
    from duel_assets.lib.calls import CallStore
    from duel_assets.lib.llm import LLMCaller
    from duel_assets.lib.pr_records import read_pr_records
    from duel_assets.lib.sampling import sample_for_key
    from duel_assets.lib.settings import Endpoint, load_config
    from duel_assets.lib.trajectories import turn_from_record

    cfg = load_config(_write_config(tmp, bench_source(tmp, TURNS), CONCURRENCY))
    turns = [turn_from_record(t) for t in sample_for_key("bench_200", cfg)["turns"]]
    assert len(turns) == TURNS, len(turns)
    prs_df = read_pr_records(None, sorted({t.instance_id for t in turns}))
    prs = duel.pr_by_instance(prs_df)
    out: dict = {}
    with standin_process(LATENCY_MS) as base:
        ep = Endpoint(base, "bench-key", "LLM")
        caller = LLMCaller(ep, cfg.calls, CallStore(tmp / "cache.sqlite"))

        def stage():
            t0 = time.monotonic()
            res = duel.run_stage(caller, turns, cfg, prs, 2, {"king", "challenger", "judge"}, label="LLM stage")
            return time.monotonic() - t0, duel.merged_stats(list(res.stats.values()))

        before = standin_requests(base)
        wall, stats = stage()
        n = stats.requested
        ideal = n * (LATENCY_MS / 1000) / CONCURRENCY
        out.update(llm_calls=n, llm_wall_s=round(wall, 3), llm_ideal_s=round(ideal, 3),
                   llm_efficiency=round(ideal / wall, 3), llm_calls_made=stats.calls_made)
        # sequential: per-call time at concurrency 1 on a sample of fresh calls, times N
        seq_cfg = cfg.calls.__class__(**{**cfg.calls.__dict__, "concurrency": 1})
        seq = LLMCaller(ep, seq_cfg, CallStore(tmp / "seq_cache.sqlite"))
        sample = duel.plan_generation("king", turns[:30], cfg, prs)
        t0 = time.monotonic()
        seq.run([p.request for p in sample], "sequential sample")
        per_call = (time.monotonic() - t0) / len(sample)
        out.update(sequential_per_call_s=round(per_call, 4), sequential_projected_s=round(per_call * n, 2),
                   speedup_vs_sequential=round(per_call * n / wall, 1))
        # warm: same stage, everything cached
        mid = standin_requests(base)
        warm_wall, warm_stats = stage()
        out.update(llm_warm_wall_s=round(warm_wall, 3), llm_warm_calls=standin_requests(base) - mid,
                   llm_cold_requests=mid - before)
    return out


def bench_warm_rerun(tmp: Path) -> dict:
    """Whole partition through Dagster: cold, warm (cache), and model stage skipped."""
    import dagster as dg

    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.resources import DuelSettings, LLMResource, warehouse_io_manager
    from duel_assets.lib.calls import CallStore
    from duel_assets.lib.llm import LLMCaller

    cfg_path = _write_config(tmp, bench_source(tmp, TURNS), CONCURRENCY)
    home = tmp / "duel_home"
    os.environ.update(DUEL_HOME=str(home), DUEL_CONFIG=str(cfg_path))
    out: dict = {}
    (tmp / "dagster_home").mkdir(exist_ok=True)
    with standin_process(LATENCY_MS) as base, dg.instance_for_test(temp_dir=str(tmp / "dagster_home")) as inst:
        os.environ.update(LLM_BASE_URL=base, LLM_API_KEY="bench-key")
        key = "bench_200"
        inst.add_dynamic_partitions("prompt_files", [key])
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def run(llm) -> float:
            t0 = time.monotonic()
            res = dg.materialize(ALL_ASSETS, partition_key=key, instance=inst, run_config=quiet,
                                 resources={"settings": DuelSettings(), "llm": llm,
                                            "io_manager": warehouse_io_manager(str(home / "warehouse.duckdb"))})
            assert res.success
            return time.monotonic() - t0

        cold = run(LLMResource())
        n0 = standin_requests(base)
        warm = run(LLMResource())
        warm_calls = standin_requests(base) - n0
        con = CallStore(home / "cache" / "llm_calls.sqlite")
        memo = dict(con.items())
        con.close()

        class MemoryCache:
            """Every completed call, in memory: the model stage skipped (no HTTP, no SQLite)."""

            def get(self, key):
                return memo.get(key)

            def get_many(self, keys):
                return {k: memo[k] for k in keys if k in memo}

            def put(self, *args):
                raise AssertionError("the skipped model stage made a call")

        class SkippedModel(LLMResource):
            def caller(self, cfg, paths, log):
                return LLMCaller(self.endpoint(), cfg.calls, MemoryCache(), log=log)

        skipped = run(SkippedModel())
        out.update(pipeline_cold_s=round(cold, 3), pipeline_warm_s=round(warm, 3), pipeline_model_skipped_s=round(skipped, 3),
                   warm_rerun_calls=warm_calls, warm_rerun_ratio=round(warm / skipped, 3))
    return out


SAMPLER_TURNS = 2000
BIG_BYTES = 1_050_000_000


def make_big_parquet(path: Path, min_bytes: int = BIG_BYTES, row_group_rows: int = 100) -> dict:
    """SWE-ZERO-format trajectories padded with incompressible observations until the file is
    >= min_bytes (row groups of ``row_group_rows`` rows, as large-row hub parquet files have)."""
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    from duel_assets.lib.sources import bundled_path

    base = [json.loads(l) for l in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    writer = None
    n = 0
    try:
        while writer is None or path.stat().st_size < min_bytes:  # each row group is flushed as written
            batch = []
            for _ in range(row_group_rows):
                r = base[n % len(base)]
                msgs = [dict(m) for m in r["messages"]]
                msgs[1]["content"] += f"\n- Variant: {n}"
                for m in msgs[3::2]:  # observations
                    m["content"] += "\n" + base64.b64encode(rng.randbytes(4000)).decode()
                batch.append({**r, "messages": msgs})
                n += 1
            table = pa.Table.from_pylist(batch)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=row_group_rows)
    finally:
        if writer is not None:
            writer.close()
    return {"sampler_file_bytes": path.stat().st_size, "sampler_file_rows": pq.ParquetFile(path).metadata.num_rows,
            "sampler_row_group_rows": row_group_rows}


_SAMPLER_CHILD = r"""
import json, random, sys, time
mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# each side imports what it uses before the clock starts: the figure is the operation's
if mode == "blocks":
    from duel_assets.lib.sampling import numbered_keys, sample_for_key
    from duel_assets.lib.settings import parse_config
else:
    import datasets, pandas
    from duel_assets.lib.trajectories import cut_turns, read_swe_zero
t0 = time.perf_counter()
if mode == "blocks":
    cfg = parse_config({"sources": [{"format": "swe_zero", "path": path}], "sampling": {"turns_per_file": 200, "seed": 3}})
    files = [sample_for_key(k, cfg) for k in numbered_keys(n, 200)]
    turns = [t for f in files for t in f["turns"]]
    rows_read = sum(f["rows_read"] for f in files)
else:
    ds = datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=sys.argv[4])
    df = ds.to_pandas()
    rows = df.sample(n=n, random_state=3).to_dict("records")
    rows_read = len(df)
    turns = []
    for r in rows:
        r["messages"] = [dict(m) for m in r["messages"]]
        cut, _ = cut_turns(read_swe_zero(r))
        turns.append(random.Random(3).choice(cut))
# VmHWM is this address space's own peak; ru_maxrss would also count the parent's pages at fork time
hwm_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
print(json.dumps({"seconds": time.perf_counter() - t0, "turns": len(turns), "rows_read": rows_read,
                  "peak_rss_mb": hwm_kb / 1024}))
"""


def _evict(path: Path) -> None:
    """Drop this file's pages from the page cache (clean pages only; no root, nothing else touched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def bench_sampler(tmp: Path, repeats: int = 3) -> dict:
    """Block sampling vs a full datasets + pandas load, each in its own process, medians of
    ``repeats`` alternating runs, with the file cold (evicted from the page cache: a dataset read
    from disk) and warm (already in memory: the most favourable case for the full load)."""
    big = tmp / "trajectories.parquet"
    out = make_big_parquet(big)
    os.sync()  # no writeback of the new file racing the clock
    runs: dict[tuple[str, str], list[dict]] = {}
    for cache in ("cold", "warm"):
        for _ in range(repeats):
            for mode in ("blocks", "full"):
                _evict(big) if cache == "cold" else _warm(big)
                p = subprocess.run([sys.executable, "-c", _SAMPLER_CHILD, mode, str(big), str(SAMPLER_TURNS),
                                    str(tmp / f"hf_{mode}_{cache}_{_}")], capture_output=True, text=True, check=True)
                runs.setdefault((cache, mode), []).append(json.loads(p.stdout.strip().splitlines()[-1]))

    def med(cache: str, mode: str, key: str) -> float:
        return float(np.median([r[key] for r in runs[(cache, mode)]]))

    out.update(sampler_turns=runs[("cold", "blocks")][0]["turns"], sampler_rows_read=runs[("cold", "blocks")][0]["rows_read"],
               sampler_repeats=repeats)
    for cache in ("cold", "warm"):
        b_s, f_s = med(cache, "blocks", "seconds"), med(cache, "full", "seconds")
        b_m, f_m = med(cache, "blocks", "peak_rss_mb"), med(cache, "full", "peak_rss_mb")
        sfx = "" if cache == "cold" else "_warm"
        out.update({f"sampler_seconds{sfx}": round(b_s, 2), f"full_load_seconds{sfx}": round(f_s, 2),
                    f"sampler_peak_rss_mb{sfx}": round(b_m), f"full_load_peak_rss_mb{sfx}": round(f_m),
                    f"sampler_time_ratio{sfx}": round(f_s / b_s, 1), f"sampler_memory_ratio{sfx}": round(f_m / b_m, 1)})
    return out


def bench_bootstrap() -> dict:
    """The gate's bootstrap on 100k turns whose scores take 21 values (exact multinomial path) and
    on 1M turns with ~100k distinct scores (binned path), as the all-partitions gate meets them."""
    from duel_assets.lib.scoring import gate
    from duel_assets.lib.settings import GateConfig

    rng = np.random.default_rng(0)
    cfg = GateConfig(resamples=2000)
    gate([50.0] * 100, cfg)  # warm-up (imports, allocator)
    out = {"bootstrap_resamples": cfg.resamples}
    for name, scores in (("", list(rng.choice(np.arange(0, 100.5, 5.0), size=100_000))),
                         ("_continuous", list(np.round(rng.uniform(20, 100, size=1_000_000), 3)))):
        t0 = time.perf_counter()
        g = gate(scores, cfg)
        out.update({f"bootstrap_turns{name}": len(scores), f"bootstrap_levels{name}": len(set(scores)),
                    f"bootstrap_seconds{name}": round(time.perf_counter() - t0, 4),
                    f"bootstrap_lower_bound{name}": g.lower_bound})
    return out


def main(as_json: bool = False) -> int:
    random.seed(0)
    results: dict = {}
    saved_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="duel-bench-") as d:
        tmp = Path(d)
        (tmp / "llm").mkdir()
        (tmp / "pipe").mkdir()
        try:
            results.update(bench_llm_stage(tmp / "llm"))
            results.update(bench_warm_rerun(tmp / "pipe"))
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        (tmp / "sampler").mkdir()
        results.update(bench_sampler(tmp / "sampler"))
    results.update(bench_bootstrap())
    if as_json:
        print(json.dumps(results))
        return 0
    r = results
    print(f"LLM stage, one {TURNS}-turn partition ({r['llm_calls']} calls: king + challenger + judges x2 orders), "
          f"stand-in latency {LATENCY_MS:.0f} ms, concurrency {CONCURRENCY}:")
    print(f"  wall {r['llm_wall_s']:.2f} s vs N*L/C = {r['llm_ideal_s']:.2f} s  -> efficiency {r['llm_efficiency']:.2f}")
    print(f"  sequential: {r['sequential_per_call_s'] * 1000:.0f} ms/call measured on 30 calls -> {r['sequential_projected_s']:.0f} s "
          f"for N  -> speedup {r['speedup_vs_sequential']:.1f}x")
    print(f"  warm re-run of the stage: {r['llm_warm_calls']} model calls, {r['llm_warm_wall_s']:.2f} s")
    print(f"Whole partition through Dagster: cold {r['pipeline_cold_s']:.2f} s, warm {r['pipeline_warm_s']:.2f} s "
          f"({r['warm_rerun_calls']} model calls), model stage skipped {r['pipeline_model_skipped_s']:.2f} s "
          f"-> warm/skipped {r['warm_rerun_ratio']:.2f}")
    print(f"Sampling {r['sampler_turns']:,} turns ({r['sampler_rows_read']:,} rows read) from a {r['sampler_file_bytes'] / 1e9:.2f} GB parquet "
          f"({r['sampler_file_rows']:,} trajectories, row groups of {r['sampler_row_group_rows']}; medians of {r['sampler_repeats']} runs):")
    for sfx, what in (("", "file not in page cache"), ("_warm", "file already in page cache")):
        print(f"  {what}: blocks {r['sampler_seconds' + sfx]:.2f} s / {r['sampler_peak_rss_mb' + sfx]} MB; datasets + pandas "
              f"full load {r['full_load_seconds' + sfx]:.2f} s / {r['full_load_peak_rss_mb' + sfx]} MB -> "
              f"{r['sampler_time_ratio' + sfx]:.1f}x less time, {r['sampler_memory_ratio' + sfx]:.1f}x less memory")
    for sfx in ("", "_continuous"):
        print(f"Bootstrap gate: {r['bootstrap_turns' + sfx]:,} turns ({r['bootstrap_levels' + sfx]:,} distinct scores) x "
              f"{r['bootstrap_resamples']:,} resamples in {r['bootstrap_seconds' + sfx]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main("--json" in sys.argv))
