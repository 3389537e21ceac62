"""The partitions page: one row per partition with its gate, bucket counts, judge agreement, cost
and labels.

The gate is the one ``duel_verdict`` decided, read from the partition's summary
(``report/partitions/<key>.json``); counts, agreement and tokens come from the warehouse
(:meth:`.reading.Reader.partition_figures`); the cost is estimated from the tokens with the
configured ``[prices]``, by the call layer's rule.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..calls import CallStats
from ..verdict.gate import Gate
from ..verdict.metadata import gate_line

BUCKET_COLUMNS = ("final", "refined", "defeat", "parse-fail", "excluded")


@dataclass
class PartitionRow:
    key: str
    turns: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)  # bucket (or parse-fail, excluded) -> turns
    mean_score: float | None = None
    gate: str | None = None  # ACCEPT / REJECT, None before duel_verdict ran
    gate_line: str = ""
    panel_turns: int = 0  # turns with two judges or more
    agreed_turns: int = 0
    tokens: int = 0
    cost_usd: float | None = None
    labelled: int = 0

    @property
    def agreement(self) -> float | None:
        return round(self.agreed_turns / self.panel_turns, 3) if self.panel_turns else None

    @property
    def accepted(self) -> int:
        return self.verdicts.get("final", 0) + self.verdicts.get("refined", 0)


def _gate(summary: dict | None) -> tuple[str | None, str]:
    g = (summary or {}).get("gate")
    if not isinstance(g, dict) or "verdict" not in g:
        return None, ""
    try:
        return g["verdict"], gate_line(Gate(**g))
    except TypeError:  # a summary written by another version: its verdict and reasons as they are
        return g["verdict"], f"{g['verdict']}: " + "; ".join(map(str, g.get("reasons") or []))


def overview(figures: Mapping[str, dict], summaries: Mapping[str, dict], prices: Mapping[str, dict],
             labelled: Mapping[str, int] | None = None) -> list[PartitionRow]:
    """One row per partition found in the warehouse or among the summaries, by key."""
    out = []
    for key in sorted(set(figures) | set(summaries)):
        f = figures.get(key, {})
        stats = CallStats()
        for _role, model, p, c, k in f.get("tokens", []):
            stats.add_tokens(str(model), p, c, k)
        verdict, line = _gate(summaries.get(key))
        out.append(PartitionRow(
            key=key, turns=int(f.get("turns") or sum((f.get("verdicts") or {}).values())),
            verdicts=dict(f.get("verdicts") or {}), mean_score=f.get("mean_score"), gate=verdict, gate_line=line,
            panel_turns=int(f.get("panel_turns") or 0), agreed_turns=int(f.get("agreed_turns") or 0),
            tokens=stats.prompt_tokens + stats.completion_tokens, cost_usd=stats.cost(dict(prices)),
            labelled=int((labelled or {}).get(key, 0))))
    return out


def thresholds(summary: dict | None, configured: Mapping[str, float]) -> dict[str, float]:
    """The bucket thresholds a partition was bucketed with (its summary), else the configured ones."""
    b = (summary or {}).get("bucketing")
    if isinstance(b, dict) and "final" in b and "refined" in b:
        return {"final": float(b["final"]), "refined": float(b["refined"])}
    return {"final": float(configured["final"]), "refined": float(configured["refined"])}
