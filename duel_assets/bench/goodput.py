"""Goodput under a provider's rate limit: four runs at once against the stand-in limited to R
requests per minute (R well under what concurrency 64 at 200 ms could send, so the limit binds).

``goodput_ratio`` = answers per minute over the whole span (first start to last finish) / R;
``rate_limited_share`` = 429 replies / requests, both counted at the endpoint.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .common import CONCURRENCY, LATENCY_MS, standin_process, standin_stats

RPM = 2400.0  # 40 a second: concurrency 64 at 200 ms could send 320
RUNS = 4
CALLS_PER_RUN = 250


def bench_goodput(tmp: Path, rpm: float = RPM, runs: int = RUNS, calls: int = CALLS_PER_RUN) -> dict:
    with standin_process(LATENCY_MS, rpm=rpm) as base:
        procs = [subprocess.Popen([sys.executable, "-m", "duel_assets.bench.worker", base, str(tmp / "goodput.sqlite"),
                                   str(calls), f"r{i}", str(CONCURRENCY)], stdout=subprocess.PIPE, text=True)
                 for i in range(runs)]
        outs = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in procs]
        served = standin_stats(base)
    span = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    answers = served["answers"]
    return {"goodput_rpm_limit": rpm, "goodput_runs": runs, "goodput_answers": answers,
            "goodput_span_s": round(span, 2), "goodput_ratio": round(answers / (span / 60.0) / rpm, 3),
            "rate_limited_share": round(served["rate_limited"] / served["requests"], 4) if served["requests"] else 0.0,
            "goodput_requests": served["requests"], "goodput_max_in_flight": served["max_in_flight"],
            "goodput_window_trace": outs[0]["window_trace"][:20]}
