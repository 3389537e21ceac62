"""One side of the sampler benchmark, in its own process so that its peak memory is its own.

``python -m duel_assets.bench.sampler_child MODE PATH N CACHE_DIR`` with MODE ``blocks`` (the
project's block sampler) or ``full`` (``datasets`` + pandas load of the whole file, then a sample);
prints one JSON line: seconds, turns, rows read, peak resident memory (VmHWM).
"""
from __future__ import annotations

import json
import random
import sys
import time


def blocks(path: str, n: int) -> tuple[list, int]:
    from duel_assets.lib.sampling.sampler import sample_for_key
    from duel_assets.lib.sampling.windows import numbered_keys
    from duel_assets.lib.settings import parse_config

    cfg = parse_config({"sources": [{"format": "swe_zero", "path": path}], "sampling": {"turns_per_file": 200, "seed": 3}})
    files = [sample_for_key(k, cfg) for k in numbered_keys(n, 200)]
    return [t for f in files for t in f["turns"]], sum(f["rows_read"] for f in files)


def full(path: str, n: int, cache_dir: str) -> tuple[list, int]:
    import datasets

    from duel_assets.lib.sampling.cutter import cut_turns
    from duel_assets.lib.sampling.readers import read_swe_zero

    df = datasets.load_dataset("parquet", data_files=path, split="train", cache_dir=cache_dir).to_pandas()
    turns = []
    for r in df.sample(n=n, random_state=3).to_dict("records"):
        r["messages"] = [dict(m) for m in r["messages"]]
        cut, _ = cut_turns(read_swe_zero(r))
        turns.append(random.Random(3).choice(cut))
    return turns, len(df)


def main(argv: list[str]) -> int:
    mode, path, n = argv[0], argv[1], int(argv[2])
    # each side imports what it uses before the clock starts: the figure is the operation's
    if mode == "blocks":
        import pyarrow.parquet  # noqa: F401

        import duel_assets.lib.sampling.sampler  # noqa: F401
    else:
        import datasets  # noqa: F401
        import pandas  # noqa: F401
    t0 = time.perf_counter()
    turns, rows_read = blocks(path, n) if mode == "blocks" else full(path, n, argv[3])
    # VmHWM is this address space's own peak; ru_maxrss would also count the parent's pages at fork time
    with open("/proc/self/status") as fh:
        hwm_kb = int(next(x for x in fh if x.startswith("VmHWM:")).split()[1])
    print(json.dumps({"seconds": time.perf_counter() - t0, "turns": len(turns), "rows_read": rows_read,
                      "peak_rss_mb": hwm_kb / 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
