"""The calibration summary (what ``calibrate --json`` prints), its Markdown form, and where it is kept.

The top-level figures are the **duel rule**'s (the verdict the duel score itself gives, see
``measures``): the panel as the gate and the buckets use it. ``majority`` and ``per_judge`` hold the
same figures for the panel's majority vote and for each judge.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..duel.judging import parse_rates
from ..settings import ChainConfig
from ..system.files import read_json, write_json_atomic
from . import results_dir
from .evidence import answered_by
from .judging import CalibrationRun
from .measures import DUEL_RULE, MAJORITY, rater_verdicts
from .pairs import CalibrationSet
from .stats import figures
from .thresholds import suggest_thresholds

FIGURES = ("accuracy", "accuracy_with_ties", "kappa", "position_consistency", "parse_rate", "tie_rate")


def target_precision(cfg: ChainConfig) -> float:
    return cfg.calibration.target_precision


def _tokens(run: CalibrationRun, cfg: ChainConfig) -> dict:
    by_judge: dict[str, list[int]] = {j: [0, 0] for j in run.panel}
    for r in run.rows:
        by_judge[r["judge"]][0] += int(r.get("prompt_tokens") or 0)
        by_judge[r["judge"]][1] += int(r.get("completion_tokens") or 0)
    prompt, completion = sum(v[0] for v in by_judge.values()), sum(v[1] for v in by_judge.values())
    out = {"prompt": prompt, "completion": completion,
           "by_judge": {j: {"prompt": p, "completion": c} for j, (p, c) in by_judge.items()},
           "new_prompt": run.stats.prompt_tokens, "new_completion": run.stats.completion_tokens}
    if cfg.prices:
        price = lambda j, kind: (cfg.prices.get(j) or {}).get(kind, 0.0)
        out["estimated_cost_usd"] = round(sum(p / 1e6 * price(j, "prompt") + c / 1e6 * price(j, "completion")
                                              for j, (p, c) in by_judge.items()), 6)
        out["new_cost_usd"] = run.stats.cost(cfg.prices)
    return out


def summarise(cset: CalibrationSet, run: CalibrationRun, cfg: ChainConfig, key: str,
              target: float | None = None, resamples: int | None = None) -> dict:
    pairs = cset.pairs
    raters = rater_verdicts(pairs, run.rows, run.panel, cfg.metric_weights)
    n_boot = resamples or cfg.gate.resamples
    duel = figures(raters[DUEL_RULE], pairs, n_boot)
    target = target_precision(cfg) if target is None else target
    return {
        "key": key, "file": str(cset.path), "sha256": _sha256(cset.path),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "panel": run.panel, "rule": DUEL_RULE, "orders": ["a_first", "b_first"],
        "endpoint": run.endpoint, "answered": run.answered, "answered_by_standin": run.answered_by_standin,
        "standin": bool(run.answered) and run.answered_by_standin == run.answered,
        "skipped": len(cset.skips), "skipped_by_reason": cset.skipped_by_reason(),
        "skipped_lines": [str(s) for s in cset.skips[:200]],
        "labels": dict(Counter(p.label for p in pairs)), "kinds": dict(Counter(p.kind or "(none)" for p in pairs)),
        **duel,
        "majority": figures(raters[MAJORITY], pairs, n_boot),
        "per_judge": {j: figures(raters[j], pairs, n_boot) for j in run.panel},
        "thresholds": suggest_thresholds(raters[DUEL_RULE].scores, [p.label for p in pairs], target,
                                         cfg.buckets.final, cfg.buckets.refined),
        "parse_rate_by_judge_and_format": parse_rates(run.rows),
        "tokens": _tokens(run, cfg),
        "calls": run.stats.as_metadata(),
        "resamples": n_boot,
    }


# ---------------------------------------------------------------- rendering


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _with_ci(block: dict, name: str) -> str:
    ci = block.get(f"{name}_ci")
    return _fmt(block.get(name)) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")


def _table(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_none_"


def raters_of(summary: dict) -> list[tuple[str, dict]]:
    return [("duel rule", summary), ("majority", summary["majority"]), *summary["per_judge"].items()]


def figures_table(summary: dict) -> str:
    return _table([{"rater": name, **{f: _with_ci(b, f) for f in FIGURES}} for name, b in raters_of(summary)])


def kind_table(summary: dict) -> str:
    kinds = sorted({k for _, b in raters_of(summary) for k in b["by_kind"]})
    return _table([{"kind": k, "pairs": summary["by_kind"].get(k, {}).get("pairs"),
                    **{name: _fmt(b["by_kind"].get(k, {}).get("accuracy")) for name, b in raters_of(summary)}}
                   for k in kinds])


def metric_table(summary: dict) -> str:
    metrics = [m for m in summary["per_metric"]] or sorted({m for _, b in raters_of(summary) for m in b["per_metric"]})
    return _table([{"metric": m, "pairs": summary["per_metric"].get(m, {}).get("pairs"),
                    **{name: _fmt(b["per_metric"].get(m, {}).get("agreement")) for name, b in raters_of(summary)}}
                   for m in metrics])


def threshold_lines(summary: dict) -> list[str]:
    th = summary["thresholds"]
    out = [f"Thresholds for \"challenger really better\" at target precision {th['target_precision']} "
           f"({th['positives']} positives among {th['scored_pairs']} scored pairs):"]
    for bucket, how in (("final", "lower 95% bound"), ("refined", "measured precision")):
        s, c, below = th["suggested"][bucket], th["configured"][bucket], th["next_lower_score"][bucket]
        sug = f"{s:g}" if s is not None else "none reaches it on this set"
        if s is not None and below is not None:
            sug += f" (any threshold above {below:g} selects the same pairs)"
        out.append(f"- {bucket} ({how} reaches the target): suggested >= {sug}; configured >= {c['threshold']:g}: "
                   f"precision {_fmt(c['precision'])} (lower 95% {_fmt(c['precision_lower95'])}), "
                   f"recall {_fmt(c['recall'])}, {c['selected']} pairs")
    return out


def render_markdown(summary: dict) -> str:
    """The report of one calibration, for the terminal and the asset's metadata."""
    tok = summary["tokens"]
    skipped = f"; {summary['skipped']} lines skipped: " + ", ".join(summary["skipped_lines"][:10]) if summary["skipped"] else ""
    lines = [
        f"# Judge calibration `{summary['key']}`",
        "",
        f"{summary['pairs']} labelled pairs from {summary['file']}{skipped}.",
        f"Panel: {', '.join(summary['panel'])} at {answered_by(summary)}; every pair judged by every judge in both orders. "
        "A pair is scored as a duel turn with `b` as the challenger: score > 50 is verdict B, < 50 A, 50 tie.",
        "", figures_table(summary), "",
        "Accuracy per kind (ties included):", "", kind_table(summary), "",
    ]
    if summary["per_metric"] or any(b["per_metric"] for _, b in raters_of(summary)):
        lines += ["Per-metric agreement with metric_labels:", "", metric_table(summary), ""]
    lines += threshold_lines(summary)
    cost = f", estimated ${tok['estimated_cost_usd']:.4f}" if "estimated_cost_usd" in tok else ""
    lines += ["", f"Tokens: {tok['prompt']} prompt + {tok['completion']} completion{cost} "
                  f"({tok['new_prompt']} + {tok['new_completion']} new in this run; the rest came from the call cache)."]
    return "\n".join(lines)


# ---------------------------------------------------------------- storage


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def result_path(home: Path, key: str) -> Path:
    return results_dir(home) / f"{key}.json"


def save_summary(home: Path, summary: dict) -> Path:
    path = result_path(home, summary["key"])
    write_json_atomic(path, summary)
    return path


def load_summary(home: Path, key: str) -> dict | None:
    return read_json(result_path(home, key))
