"""Markdown pieces shared by report.md and the dataset card. No Dagster imports."""
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


def gate_table(summaries: dict[str, dict], last_header: str, last) -> list[str]:
    """Per-partition gate rows; ``last(key, gate)`` fills the final column."""
    lines = [f"| partition | verdict | turns | parsed | excluded | mean margin | lower bound | {last_header} |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for k, s in summaries.items():
        g = s["gate"]
        lines.append(f"| {k} | {g['verdict']} | {g['turns']} | {g['parsed_turns']} | {sum((g.get('excluded') or {}).values())} | "
                     f"{fmt(g['mean_margin'], 2)} | {fmt(g['lower_bound'], 2)} | {last(k, g)} |")
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
