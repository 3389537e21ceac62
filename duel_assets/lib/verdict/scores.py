"""The duel score of a turn, from its judges' margins.

A cell (turn, judge, metric) is the challenger's margin averaged over the judge's parsed orders:
> 0 win, = 0 tie, < 0 loss. The duel score is 100 x the weighted share of the turn's cells the
challenger wins (tie = 1/2), over the judges that parsed in at least one order; a turn is parsed
when at least half its judges parsed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..settings import METRICS, MetricName


@dataclass
class TurnScore:
    parsed: bool
    score: float | None
    judges_parsed: int
    judges_total: int
    per_metric: dict[str, float] = field(default_factory=dict)  # metric -> share won (0..1) across judges
    per_judge: dict[str, float] = field(default_factory=dict)  # judge -> judge's own duel score

    def to_dict(self) -> dict:
        return asdict(self)


def _outcome(margin: float) -> float:
    return 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0


def score_turn(margins_by_judge: dict[str, list[dict[str, int] | None]], weights: dict[MetricName, float]) -> TurnScore:
    """``margins_by_judge[judge]`` holds one entry per order (None for an order that did not parse)."""
    total_w = sum(weights[m] for m in METRICS)
    per_metric_acc: dict[str, list[float]] = {m: [] for m in METRICS}
    per_judge: dict[str, float] = {}
    num = 0.0
    den = 0.0
    for judge, orders in margins_by_judge.items():
        parsed = [o for o in orders if o is not None]
        if not parsed:
            continue
        j_num = 0.0
        for m in METRICS:
            avg = sum(o[m] for o in parsed) / len(parsed)
            out = _outcome(avg)
            per_metric_acc[m].append(out)
            j_num += weights[m] * out
        per_judge[judge] = 100.0 * j_num / total_w if total_w else 50.0
        num += j_num
        den += total_w
    n_total = len(margins_by_judge)
    n_parsed = len(per_judge)
    ok = n_total > 0 and n_parsed * 2 >= n_total and den > 0
    return TurnScore(
        parsed=ok,
        score=(100.0 * num / den) if ok else None,
        judges_parsed=n_parsed,
        judges_total=n_total,
        per_metric={m: (sum(v) / len(v)) for m, v in per_metric_acc.items() if v},
        per_judge=per_judge,
    )
