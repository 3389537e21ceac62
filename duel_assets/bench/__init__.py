"""`duel-assets bench`: figures measured in one run, printed as ratios (and as one JSON object with --json).

Each part lives in its own module: :mod:`.llm` (throughput, cache share, skipped judge calls, cost
per accepted turn), :mod:`.goodput` (four runs under a provider's rate limit), :mod:`.pipeline`
(warm re-run and UI-launched runs through Dagster), :mod:`.sampler` (block sampling vs a full load),
:mod:`.curation` (decontamination and near-duplicate control on 1M source rows), :mod:`.bootstrap` (the
gate at scale). ``--only`` runs some of them.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

from .common import CONCURRENCY, LATENCY_MS, TURNS

PARTS = ("llm", "panel", "goodput", "pipe", "sampler", "curation", "bootstrap")


def run_all(only: list[str] | None = None) -> dict:
    from .bootstrap import bench_bootstrap
    from .curation import bench_curation
    from .goodput import bench_goodput
    from .llm import bench_efficiency, bench_panel
    from .pipeline import bench_warm_rerun
    from .sampler import bench_sampler

    random.seed(0)
    results: dict = {}
    saved_env = dict(os.environ)
    fns = {"llm": bench_efficiency, "panel": bench_panel, "goodput": bench_goodput, "pipe": bench_warm_rerun,
           "sampler": bench_sampler, "curation": bench_curation, "bootstrap": lambda _tmp: bench_bootstrap()}
    with tempfile.TemporaryDirectory(prefix="duel-bench-") as d:
        tmp = Path(d)
        for name in PARTS:
            if only and name not in only:
                continue
            (tmp / name).mkdir()
            try:
                results.update(fns[name](tmp / name))
            finally:
                os.environ.clear()
                os.environ.update(saved_env)
    return results


def report(r: dict) -> list[str]:
    """The text lines of each part the results hold, in the parts' order."""
    sections = (("llm_calls", _llm), ("panel_turns", _panel), ("goodput_ratio", _goodput), ("pipeline_cold_s", _pipe),
                ("sampler_turns", _sampler), ("decontam_time_ratio", _curation), ("bootstrap_turns", _bootstrap))
    return [line for key, lines in sections if key in r for line in lines(r)]


def _llm(r: dict) -> list[str]:
    return [
        f"LLM stage, one {TURNS}-turn partition ({r['llm_calls']} calls asked: king + challenger + a judge x2 orders; "
        f"{r['llm_calls_sent']} sent, {r['llm_merged']} merged with an identical call in flight), stand-in latency "
        f"{LATENCY_MS:.0f} ms, concurrency {CONCURRENCY}:",
        f"  wall {r['llm_wall_s']:.2f} s vs sent*L/C = {r['llm_ideal_s']:.2f} s  -> efficiency {r['llm_efficiency']:.2f} "
        f"(client CPU {r['llm_client_cpu_s']:.2f} s); median of {len(r['llm_efficiency_trials'])} runs: "
        f"{', '.join(f'{e:.3f}' for e in r['llm_efficiency_trials'])}; share of the machine's CPU time taken by its host "
        f"meanwhile: {', '.join('n/a' if s is None else f'{s:.0%}' for s in r['llm_cpu_steal_share_trials'])}",
        f"  a plain AsyncOpenAI + semaphore client on the same {r['plain_sdk_calls']} bodies and stand-in: efficiency "
        f"{r['plain_sdk_efficiency']:.2f} ({', '.join(f'{e:.3f}' for e in r['plain_sdk_efficiency_trials'])}) -> "
        f"llm_vs_plain_sdk {r['llm_vs_plain_sdk']:.2f} (per run: {', '.join(f'{x:.2f}' for x in r['llm_vs_plain_sdk_trials'])}); "
        f"client CPU per call {r['llm_client_cpu_ms_per_call']:.2f} ms vs {r['plain_sdk_client_cpu_ms_per_call']:.2f} ms; "
        f"host's share meanwhile: {', '.join('n/a' if s is None else f'{s:.0%}' for s in r['plain_sdk_cpu_steal_share_trials'])}",
        f"  sequential: {r['sequential_per_call_s'] * 1000:.0f} ms/call measured on 30 calls -> {r['sequential_projected_s']:.0f} s "
        f"-> speedup {r['speedup_vs_sequential']:.1f}x; warm re-run: {r['llm_warm_calls']} model calls, {r['llm_warm_wall_s']:.2f} s; "
        f"repeated bodies at the endpoint: {r['llm_repeats']}"]


def _panel(r: dict) -> list[str]:
    cost = r.get("cost_per_accepted_turn")
    return [
        f"Three-judge panel, {r['panel_turns']} turns, caching stand-in: {r['cached_prompt_share']:.0%} of prompt tokens from the "
        f"provider's prefix cache; {r['judge_calls_skipped']}/{r['judge_calls']} judge calls skipped as decided "
        f"(judge_calls_saved {r['judge_calls_saved']:.0%}, buckets identical: {r['buckets_identical']}); "
        f"{r['accepted_turns']} accepted turns, cost per accepted turn "
        + (f"${cost:.6f}" if cost is not None else "n/a") + f" (by role: {r['cost_by_role']})",
        f"  the same partition through the batch API ({r['batches_created']} batches, at the batch prices): "
        + (f"${r['cost_per_accepted_turn_batch']:.6f}" if r.get("cost_per_accepted_turn_batch") is not None else "n/a")
        + f" per accepted turn ({r['batch_accepted_turns']} accepted; buckets as online: {r['batch_buckets_identical']}; "
        f"batch/online {r['batch_vs_online_cost']})"]


def _goodput(r: dict) -> list[str]:
    return [
        f"Goodput: {r['goodput_runs']} runs at once against a {r['goodput_rpm_limit']:.0f} rpm limit: {r['goodput_answers']} answers "
        f"in {r['goodput_span_s']:.1f} s -> goodput_ratio {r['goodput_ratio']:.2f}, rate_limited_share {r['rate_limited_share']:.3f}"]


def _pipe(r: dict) -> list[str]:
    return [
        f"Whole partition through Dagster: cold {r['pipeline_cold_s']:.2f} s, warm {r['pipeline_warm_s']:.2f} s "
        f"({r['warm_rerun_calls']} model calls), model stage skipped {r['pipeline_model_skipped_s']:.2f} s "
        f"-> warm/skipped {r['warm_rerun_ratio']:.2f}",
        f"  launched as the UI launches it: {r['ui_run_s']:.2f} s vs duel-assets run --partition {r['cli_run_s']:.2f} s "
        f"-> ui_run_ratio {r['ui_run_ratio']:.2f}"]


def _sampler(r: dict) -> list[str]:
    return [
        f"Sampling {r['sampler_turns']:,} turns ({r['sampler_rows_read']:,} rows read) from a {r['sampler_file_bytes'] / 1e9:.2f} GB "
        f"parquet ({r['sampler_file_rows']:,} trajectories; medians of {r['sampler_repeats']} runs):",
        *[f"  {what}: blocks {r['sampler_seconds' + sfx]:.2f} s / {r['sampler_peak_rss_mb' + sfx]} MB; datasets + pandas "
          f"{r['full_load_seconds' + sfx]:.2f} s / {r['full_load_peak_rss_mb' + sfx]} MB -> {r['sampler_time_ratio' + sfx]:.1f}x "
          f"less time, {r['sampler_memory_ratio' + sfx]:.1f}x less memory"
          for sfx, what in (("", "file not in page cache"), ("_warm", "file already in page cache"))]]


def _curation(r: dict) -> list[str]:
    nd = r["curation_near_duplicates"]
    return [
        f"Decontamination + near-duplicates on {r['curation_rows']:,} source rows ({r['curation_file_bytes'] / 1e9:.2f} GB "
        f"JSON Lines, {r['curation_blocks']:,} blocks): sampling without them {r['curation_plain_seconds']:.1f} s "
        f"({r['curation_plain_turns']:,} turns), with them {r['curation_seconds']:.1f} s ({r['curation_turns']:,} turns; "
        f"{r['curation_contaminated_rows']:,} rows dropped as contaminated, {r['curation_tagged_turns']:,} turns tagged, "
        f"near-duplicates skipped {sum(nd.values()):,}: {nd}) -> decontam_time_ratio {r['decontam_time_ratio']:.2f} "
        f"(CPU time {r['curation_cpu_seconds']:.1f} s vs {r['curation_plain_cpu_seconds']:.1f} s: decontam_cpu_ratio "
        f"{r['decontam_cpu_ratio']:.2f})"]


def _bootstrap(r: dict) -> list[str]:
    return [
        *[f"Bootstrap gate: {r['bootstrap_turns' + sfx]:,} turns ({r['bootstrap_levels' + sfx]:,} distinct scores) x "
          f"{r['bootstrap_resamples']:,} resamples in {r['bootstrap_seconds' + sfx]:.3f} s" for sfx in ("", "_continuous")],
    ]


def main(as_json: bool = False, only: list[str] | None = None) -> int:
    results = run_all(only)
    print(json.dumps(results) if as_json else "\n".join(report(results)))
    return 0
