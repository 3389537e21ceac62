"""Sampling from a large parquet file of trajectories: block sampling vs a full datasets + pandas load.

Each side runs in its own process (``duel_assets.bench.sampler_child``) so that its peak memory is
its own; medians of a few alternating runs, with the file cold (evicted from the page cache) and
warm (already in memory: the most favourable case for the full load).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

SAMPLER_TURNS = 2000
BIG_BYTES = 1_050_000_000


def make_big_parquet(path: Path, min_bytes: int = BIG_BYTES, row_group_rows: int = 100) -> dict:
    """SWE-ZERO-format trajectories padded with incompressible observations until the file is
    >= min_bytes (row groups of ``row_group_rows`` rows, as large-row hub parquet files have)."""
    import base64

    import pyarrow as pa
    import pyarrow.parquet as pq

    from duel_assets.lib.sampling.sources import bundled_path

    base = [json.loads(line) for line in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
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
                p = subprocess.run([sys.executable, "-m", "duel_assets.bench.sampler_child", mode, str(big), str(SAMPLER_TURNS),
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
