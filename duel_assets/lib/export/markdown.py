"""Markdown pieces shared by report.md and the dataset card."""
from __future__ import annotations


def fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def gate_lines(g: dict) -> list[str]:
    lines = [
        f"- **Gate: {g['verdict']}**",
        f"- mean margin (score - 50): {fmt(g['mean_margin'], 2)} (minimum {g['min_margin']})",
        f"- bootstrap {g['confidence']:.0%} lower bound: {fmt(g['lower_bound'], 2)} (must be > 0; {g['resamples']} resamples)",
        f"- parsed fraction: {g['parsed_fraction']:.2f} ({g['parsed_turns']}/{g['turns']}; minimum {g['min_parsed_fraction']})",
    ]
    if g.get("excluded"):
        lines.append("- excluded turns (in neither the parsed fraction nor the margins): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(g["excluded"].items())))
    for r in g.get("reasons", []):
        lines.append(f"- reject reason: {r}")
    return lines


def bucketing_text(b: dict | None) -> str:
    """The thresholds a partition was bucketed with, as a reader wants them."""
    if not b:
        return "not recorded"
    return f"final >= {b['final']:g}, refined >= {b['refined']:g}, leak suspects: {b['leak_action']}"


def bucketing_lines(summaries: dict[str, dict], current: dict, scope: str = "every partition") -> list[str]:
    """What report.md and the card say about the bucket thresholds: the ones every partition was
    bucketed with, or, when they differ, which partitions used which (a score is then not in the same
    bucket everywhere), and which partitions differ from the configuration's."""
    groups: dict[str, list[str]] = {}
    for k, s in summaries.items():
        groups.setdefault(bucketing_text(s.get("bucketing")), []).append(k)
    now = bucketing_text(current)
    stale = [k for k, s in summaries.items() if s.get("bucketing") != current]
    if len(groups) <= 1:
        used = next(iter(groups), now)
        lines = [f"Buckets: {used} ({scope})."]
    else:
        lines = ["**The partitions were bucketed with different thresholds**, so one score can be in different "
                 "buckets in different partitions:", ""]
        lines += [f"- {text}: {_keys(keys)}" for text, keys in sorted(groups.items())]
        lines.append("")
    if stale:
        lines.append(f"The configuration now says {now}; partitions bucketed otherwise ({_keys(stale)}) keep their "
                     "buckets until their `duel_verdict` and `exported_buckets` are materialized again.")
    return lines


def _keys(keys: list[str], most: int = 20) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def gate_table(summaries: dict[str, dict], last_header: str, last) -> list[str]:
    """Per-partition gate rows with the bucket thresholds each partition was bucketed with;
    ``last(key, gate)`` fills the final column."""
    lines = [f"| partition | verdict | turns | parsed | excluded | mean margin | lower bound | final / refined >= | {last_header} |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for k, s in summaries.items():
        g, b = s["gate"], s.get("bucketing")
        cut = f"{b['final']:g} / {b['refined']:g}" if b else "not recorded"
        lines.append(f"| {k} | {g['verdict']} | {g['turns']} | {g['parsed_turns']} | {sum((g.get('excluded') or {}).values())} | "
                     f"{fmt(g['mean_margin'], 2)} | {fmt(g['lower_bound'], 2)} | {cut} | {last(k, g)} |")
    return lines


def models_line(prov: dict) -> str:
    """Which models answered and judged: served models where the endpoint named them, else the
    configured ones."""
    parts = []
    for role in ("king", "challenger", "judge"):
        served = prov.get("served_models", {}).get(role) or {}
        configured = prov.get("configured_models", {}).get(role) or {}
        if served:
            parts.append(f"{role}: " + ", ".join(f"{m} ({n})" for m, n in sorted(served.items())) + " (served)")
        elif configured:
            parts.append(f"{role}: " + ", ".join(f"{m} ({n})" for m, n in sorted(configured.items()))
                         + " (configured; the endpoint did not name the serving model)")
    return "Models: " + "; ".join(parts) + "." if parts else "Models: none called."
