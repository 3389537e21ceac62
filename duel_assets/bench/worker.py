"""One of the runs of the goodput benchmark: distinct calls through the call layer, stats as JSON.

``python -m duel_assets.bench.worker BASE_URL STORE N TAG CONCURRENCY``
"""
from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    base, store, n, tag, concurrency = argv[0], argv[1], int(argv[2]), argv[3], int(argv[4])
    cfg = CallsConfig(concurrency=concurrency, timeout_s=30, retry_budget=8, backoff_base_s=0.2, backoff_max_s=5)
    caller = LLMCaller(Endpoint(base, "bench-key", "LLM"), cfg, CallStore(store))
    reqs = [CallRequest("king", "standin-generator", [{"role": "user", "content": f"goodput {tag} {i}: list the files"}],
                        {"max_tokens": 64}) for i in range(n)]
    t0 = time.time()
    results, stats = caller.run(reqs, f"run {tag}")
    print(json.dumps({"start": t0, "end": time.time(), "ok": sum(r.ok for r in results), "sent": stats.calls_made,
                      "rate_limited": stats.rate_limited, "window_trace": stats.window_trace}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
