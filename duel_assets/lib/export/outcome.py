"""What a run delivered, one line per partition, and which partitions delivered nothing: read from
the partitions' summaries and export manifests."""
from __future__ import annotations

from ..settings import Paths
from .summary import read_manifest, read_summary

# what to look at when every turn of a partition was excluded for one reason
EXCLUSION_HINTS = {
    "no_hidden_info": "no hidden PR record matched its instances: check [[pr_records]] (pr_records' metadata "
                      "counts the instances without one), or set [hidden_info] when_missing = \"duel\"",
    "excluded_instance": "its instances are all in excluded_instance_ids",
    "king_malformed": "the king's answers still broke the protocol after generation.max_resamples re-samples",
}


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))


def partition_line(key: str, summary: dict, manifest: dict | None = None) -> str:
    """``[key] T turns: D dueled (P parsed), E excluded (by reason); accepted A (final, refined), defeat,
    parse-fail (thresholds); gate V (reasons); export: rows or why not``."""
    g, ex, b = summary["gate"], summary.get("excluded") or {}, summary.get("buckets") or {}
    n_ex = sum(ex.values())
    cut = summary.get("bucketing")
    parts = [
        f"[{key}] {g['turns'] + n_ex} turns: {g['turns']} dueled ({g['parsed_turns']} parsed), {n_ex} excluded"
        + (f" ({_counts(ex)})" if ex else ""),
        f"accepted {b.get('final', 0) + b.get('refined', 0)} (final {b.get('final', 0)}, refined {b.get('refined', 0)}), "
        f"defeat {b.get('defeat', 0)}, parse-fail {b.get('parse-fail', 0)}"
        + (f" (final >= {cut['final']:g}, refined >= {cut['refined']:g})" if cut else ""),
        f"gate {g['verdict']}" + (f" ({'; '.join(g['reasons'])})" if g.get("reasons") else ""),
    ]
    sft = (manifest or {}).get("sft")
    if sft is not None:
        parts.append(f"SFT rows {sft['rows']}" + (f" (left out: {sft['excluded']})" if sft.get("excluded") else ""))
    return "; ".join(parts)


def delivered_nothing(key: str, summary: dict) -> str | None:
    """Why a partition delivered no verdict at all (no turn dueled, or none parsed), or None."""
    g, ex = summary["gate"], summary.get("excluded") or {}
    if g["parsed_turns"]:
        return None
    total = g["turns"] + sum(ex.values())
    if not total:
        return f"[{key}] dueled no turn: the partition has no turn"
    if not g["turns"]:
        hints = [EXCLUSION_HINTS[r] for r in sorted(ex) if r in EXCLUSION_HINTS]
        return (f"[{key}] dueled no turn: all {total} turns were excluded ({_counts(ex)})"
                + (f"; {'; '.join(hints)}" if hints else ""))
    return f"[{key}] no verdict: {g['turns']} turns dueled and none parsed (the judges' replies are in judge_scores)"


def run_outcome(paths: Paths, keys: list[str]) -> tuple[list[str], list[str]]:
    """(one line per partition, the lines of partitions that delivered nothing) for partitions whose
    run succeeded: their summaries are the ones that run wrote."""
    lines, nothing = [], []
    for key in keys:
        summary = read_summary(paths, key)
        if summary is None:
            nothing.append(f"[{key}] no verdicts were written (report/partitions/{key}.json is missing)")
            continue
        lines.append(partition_line(key, summary, read_manifest(paths, key)))
        if (why := delivered_nothing(key, summary)) is not None:
            nothing.append(why)
    return lines, nothing
