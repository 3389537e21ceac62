"""The bootstrap gate at the sizes the all-partitions gate meets."""
from __future__ import annotations

import time

import numpy as np


def bench_bootstrap() -> dict:
    """The gate's bootstrap on 100k turns whose scores take 21 values (exact multinomial path) and
    on 1M turns with ~100k distinct scores (binned path), as the all-partitions gate meets them."""
    from duel_assets.lib.settings import GateConfig
    from duel_assets.lib.verdict.gate import gate

    rng = np.random.default_rng(0)
    cfg = GateConfig(resamples=2000)
    gate([50.0] * 100, cfg)  # warm-up (imports, allocator)
    out: dict[str, float | None] = {"bootstrap_resamples": cfg.resamples}
    for name, scores in (("", list(rng.choice(np.arange(0, 100.5, 5.0), size=100_000))),
                         ("_continuous", list(np.round(rng.uniform(20, 100, size=1_000_000), 3)))):
        t0 = time.perf_counter()
        g = gate(scores, cfg)
        out.update({f"bootstrap_turns{name}": len(scores), f"bootstrap_levels{name}": len(set(scores)),
                    f"bootstrap_seconds{name}": round(time.perf_counter() - t0, 4),
                    f"bootstrap_lower_bound{name}": g.lower_bound})
    return out
