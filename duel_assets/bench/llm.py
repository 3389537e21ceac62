"""The LLM stage against the stand-in: throughput, and money per accepted training turn.

* efficiency: one partition's king, challenger and judge calls (one judge, both orders) at 200 ms
  latency and concurrency 64, wall time vs the Little's-law limit (calls sent) x L / C (the median
  of three runs, each against a fresh stand-in and call store), and vs sequential calls (per-call
  time on 30 calls at concurrency 1, times the calls sent);
* the same bodies, captured at the stand-in, sent by a plain ``AsyncOpenAI`` + semaphore client
  (:mod:`.plain_sdk`) in each run, against the same stand-in (reset in between; the two go first
  in turn): ``llm_vs_plain_sdk`` is the project's efficiency over the plain client's (the median of
  the runs' ratios), beside the client CPU per call of each;
* a three-judge panel (one judge is the generation model, as in a train_data panel) on the same
  kind of partition against the caching stand-in: the share of prompt tokens served from the
  provider's prefix cache, the judge calls skipped because the bucket was already fixed (buckets
  compared with a run that asks every judge, on the same cached replies), and the estimated cost
  per accepted (final + refined) turn, per call role.
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pandas as pd

from .common import CONCURRENCY, LATENCY_MS, TRIALS, TURNS, bench_source, partition, standin_process, standin_stats, write_config


def _caller(base: str, calls_cfg, store_path: Path):
    from duel_assets.lib.calls import CallStore, LLMCaller
    from duel_assets.lib.settings import Endpoint

    return LLMCaller(Endpoint(base, "bench-key", "LLM"), calls_cfg, CallStore(store_path))


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time by state (``/proc/stat``), where the system has it."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the machine's CPU time its host took for other guests meanwhile (``steal``)."""
    if not before or not after or len(before) < 8:
        return None
    d = [b - a for a, b in zip(before, after)]
    return round(d[7] / sum(d), 3) if sum(d) else None


def _control(base: str, path: str, payload: dict | None = None):
    """A stand-in test hook: POST ``payload`` (or GET) and the decoded answer."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(base.replace("/v1", "") + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _plain(base: str, bodies: list[dict]) -> dict:
    """The same bodies through the plain ``AsyncOpenAI`` + semaphore client (:mod:`.plain_sdk`)."""
    from .plain_sdk import replay

    ticks = cpu_ticks()
    out = replay(base, bodies, CONCURRENCY)
    out.update(steal=steal_share(ticks, cpu_ticks()), sent=len(bodies))
    out["efficiency"] = len(bodies) * (LATENCY_MS / 1000) / CONCURRENCY / out["wall"]
    return out


def _trial(tmp: Path, n: int, cfg, turns, prs, bodies: list[dict] | None) -> dict:
    """One measured run of the stage against a fresh stand-in and call store, and one of the plain
    client on the same bodies (before it on odd runs, after it on even ones; the stand-in reset in
    between). The store is introduced to the endpoint first (the sequential sample on trial 0, one
    call on the others), as any earlier run of a deployment would have."""
    from duel_assets.lib.duel import answers, stage, steps

    with standin_process(LATENCY_MS) as base:
        out: dict = {}
        if bodies is not None and n % 2 == 1:
            out["plain"] = _plain(base, bodies)
            _control(base, "/_standin/reset", {})
        store = tmp / f"cache{n}.sqlite"
        seq = _caller(base, cfg.calls.model_copy(update={"concurrency": 1}), store)
        sample = answers.plan_generation("king", turns[-30:], cfg, prs, sample_index=99)
        t0 = time.monotonic()
        seq.run([p.request for p in (sample if n == 0 else sample[:1])], "sequential sample")
        if n == 0:
            out["per_call"] = (time.monotonic() - t0) / len(sample)
        caller = _caller(base, cfg.calls, store)
        before = standin_stats(base)["requests"]
        _control(base, "/_standin/bodies", {"keep": True})
        ticks = cpu_ticks()
        t0, c0 = time.monotonic(), time.process_time()
        res = stage.run_stage(caller, turns, cfg, prs, 2, {"king", "challenger", "judge"}, label="LLM stage")
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        steal = steal_share(ticks, cpu_ticks())
        sent = standin_stats(base)["requests"] - before
        out["bodies"] = _control(base, "/_standin/bodies")
        _control(base, "/_standin/bodies", {"keep": False})
        ideal = sent * (LATENCY_MS / 1000) / CONCURRENCY
        out.update(wall=wall, cpu=cpu, steal=steal, stats=steps.merged_stats(list(res.stats.values())),
                   sent=sent, ideal=ideal, efficiency=ideal / wall)
        if n == TRIALS - 1:  # the same partition again: every call is in the store
            mid = standin_stats(base)["requests"]
            t0 = time.monotonic()
            stage.run_stage(caller, turns, cfg, prs, 2, {"king", "challenger", "judge"}, label="LLM stage (warm)")
            out.update(warm_wall=time.monotonic() - t0, warm_calls=standin_stats(base)["requests"] - mid)
        out["repeats"] = standin_stats(base)["repeats"]
        if "plain" not in out:
            _control(base, "/_standin/reset", {})
            out["plain"] = _plain(base, bodies if bodies is not None else out["bodies"])
    return out


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def bench_efficiency(tmp: Path) -> dict:
    """Median of :data:`TRIALS` runs, each printed: the machine is a shared VM whose host takes CPU
    time at random (``llm_cpu_steal_share_trials`` says how much, per run)."""
    cfg, turns, prs = partition(tmp, write_config(tmp, bench_source(tmp, TURNS)), "bench_200")
    assert len(turns) == TURNS, len(turns)
    trials: list[dict] = []
    for n in range(TRIALS):
        trials.append(_trial(tmp, n, cfg, turns, prs, trials[0]["bodies"] if trials else None))
    mid = sorted(trials, key=lambda t: t["efficiency"])[TRIALS // 2]
    stats, sent, wall, per_call = mid["stats"], mid["sent"], mid["wall"], trials[0]["per_call"]
    last = trials[-1]
    plain = [t["plain"] for t in trials]
    ratios = [t["efficiency"] / t["plain"]["efficiency"] for t in trials]
    return dict(llm_calls=stats.requested, llm_calls_sent=sent, llm_merged=stats.merged, llm_wall_s=round(wall, 3),
                llm_ideal_s=round(mid["ideal"], 3), llm_efficiency=round(mid["efficiency"], 3), llm_client_cpu_s=round(mid["cpu"], 2),
                llm_efficiency_trials=[round(t["efficiency"], 3) for t in trials],
                llm_client_cpu_s_trials=[round(t["cpu"], 2) for t in trials],
                llm_client_cpu_ms_per_call=round(_median([t["cpu"] / t["sent"] for t in trials]) * 1000, 3),
                llm_cpu_steal_share_trials=[t["steal"] for t in trials],
                plain_sdk_calls=plain[0]["sent"], plain_sdk_answered=plain[0]["answered"],
                plain_sdk_efficiency=round(_median([p["efficiency"] for p in plain]), 3),
                plain_sdk_efficiency_trials=[round(p["efficiency"], 3) for p in plain],
                plain_sdk_client_cpu_ms_per_call=round(_median([p["cpu"] / p["sent"] for p in plain]) * 1000, 3),
                plain_sdk_cpu_steal_share_trials=[p["steal"] for p in plain],
                llm_vs_plain_sdk=round(_median(ratios), 3), llm_vs_plain_sdk_trials=[round(r, 3) for r in ratios],
                sequential_per_call_s=round(per_call, 4), sequential_projected_s=round(per_call * sent, 2),
                speedup_vs_sequential=round(per_call * sent / wall, 1),
                llm_warm_wall_s=round(last["warm_wall"], 3), llm_warm_calls=last["warm_calls"],
                llm_repeats=sum(t["repeats"] for t in trials))


def _buckets(res, turns, cfg) -> dict[str, str | None]:
    from duel_assets.lib import tables
    from duel_assets.lib.verdict import verdicts

    judge_df = pd.DataFrame(res.rows["judge"], columns=tables.columns("judge_scores"))
    chal_df = pd.DataFrame(res.rows["challenger"], columns=tables.columns("challenger_answers"))
    return {r["turn_id"]: r["bucket"] for r in verdicts.verdict_rows(judge_df, chal_df, [t.turn_id for t in turns], cfg)}


def bench_panel(tmp: Path, turns_n: int = 100) -> dict:
    from duel_assets.lib.duel import stage, steps

    judges = ("standin-generator", "standin-judge-2", "standin-judge-3")
    cfg, turns, prs = partition(tmp, write_config(tmp, bench_source(tmp, turns_n), judges=judges, turns=turns_n), "panel_100")
    out: dict = {}
    with standin_process(LATENCY_MS) as base:
        caller = _caller(base, cfg.calls, tmp / "panel.sqlite")
        res = stage.run_stage(caller, turns, cfg, prs, 2, {"king", "challenger", "judge"}, label="panel, skipping decided")
        buckets = _buckets(res, turns, cfg)
        st = {role: s for role, s in res.stats.items()}
        allst = steps.merged_stats(list(st.values()))
        served = standin_stats(base)
        out.update(cached_prompt_share=round(allst.cached_tokens / allst.prompt_tokens, 4) if allst.prompt_tokens else None,
                   standin_cached_share=round(served["cached_tokens"] / served["prompt_tokens"], 4) if served["prompt_tokens"] else None)
        accepted = sum(1 for b in buckets.values() if b in ("final", "refined"))
        cost = allst.cost(cfg.prices) or 0.0
        out.update(panel_turns=len(turns), accepted_turns=accepted, panel_cost_usd=round(cost, 6),
                   cost_per_accepted_turn=round(cost / accepted, 6) if accepted else None,
                   tokens_per_accepted_turn=round((allst.prompt_tokens + allst.completion_tokens) / accepted) if accepted else None,
                   cost_by_role={r: s.cost(cfg.prices) for r, s in st.items()},
                   tokens_by_role={r: s.prompt_tokens + s.completion_tokens for r, s in st.items()})
        skipped = st["judge"].skipped_decided
        cfg.judges.skip_decided = False  # every judge asked: the replies skipped above are bought now, the rest come from the cache
        full = stage.run_stage(caller, turns, cfg, prs, 2, {"king", "challenger", "judge"}, label="panel, every judge")
        judge_total = full.stats["judge"].requested
        out.update(judge_calls=judge_total, judge_calls_skipped=skipped,
                   judge_calls_saved=round(skipped / judge_total, 4) if judge_total else 0.0,
                   buckets_identical=_buckets(full, turns, cfg) == buckets)
        cfg.judges.skip_decided = True
        out.update(_batch_cost(base, cfg, turns, prs, tmp, buckets, cost / accepted if accepted else None))
    return out


def _batch_cost(base: str, cfg, turns, prs, tmp: Path, online_buckets: dict, online: float | None) -> dict:
    """The same partition through the stand-in's batch API (a fresh call store and prefix cache):
    cost per accepted turn at the batch prices, beside the online figure."""
    from duel_assets.lib.calls.budget import Pricing
    from duel_assets.lib.duel import stage, steps

    _control(base, "/_standin/reset", {})
    cfg.calls.mode, cfg.calls.batch_poll_s = "batch", 0.1
    try:
        res = stage.run_stage(_caller(base, cfg.calls, tmp / "panel_batch.sqlite"), turns, cfg, prs, 2,
                             {"king", "challenger", "judge"}, label="panel, batch")
    finally:
        cfg.calls.mode = "online"
    buckets = _buckets(res, turns, cfg)
    accepted = sum(1 for b in buckets.values() if b in ("final", "refined"))
    pricing = Pricing(cfg.prices)
    allst = steps.merged_stats(list(res.stats.values()))
    cost = sum(pricing.paid(m, {"prompt_tokens": p, "completion_tokens": c, "cached_tokens": k}, batch=True)
               for m, (p, c, k) in allst.model_tokens.items())
    batch = round(cost / accepted, 6) if accepted else None
    served = standin_stats(base)
    return {"cost_per_accepted_turn_online": None if online is None else round(online, 6),
            "cost_per_accepted_turn_batch": batch, "batch_accepted_turns": accepted,
            "batch_buckets_identical": buckets == online_buckets, "batches_created": served["batches_created"],
            "batch_vs_online_cost": round(batch / online, 3) if batch and online else None}
