"""From judgements to verdicts: each judge, the panel's majority, and the duel score's own rule.

A pair is scored as a duel turn in which ``b`` plays the challenger and ``a`` the opponent, with
``verdict.scores.score_turn`` and the configured metric weights: a score above 50 is the verdict ``"B"``
(``b`` is better), below 50 ``"A"``, exactly 50 ``"tie"``. Applied to

* one judge's judgements (its parsed orders averaged per metric): that judge's verdict;
* all judges' judgements (a pair is parsed when at least half the judges parsed, as in the duel):
  the **duel rule** verdict — the verdict the duel score itself gives;
* a single order: the verdict of that order alone (for position consistency).

The **majority** verdict is the verdict most judges gave (judges without a verdict abstain); no
strict majority is ``"tie"``. Per metric, a cell's averaged margin gives ``"B"`` / ``"A"`` /
``"tie"`` for a judge; the duel rule takes the share of judges whose cell ``b`` wins (above ½: ``"B"``).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..settings import METRICS, MetricName
from ..verdict.scores import score_turn
from .judging import ORDERS
from .pairs import LabelledPair

DUEL_RULE = "duel_rule"
MAJORITY = "majority"
_EPS = 1e-9


def verdict_of(score: float | None) -> str | None:
    """Duel score (``b`` as challenger) -> verdict: > 50 ``"B"``, < 50 ``"A"``, 50 ``"tie"``."""
    if score is None:
        return None
    return "B" if score > 50 + _EPS else "A" if score < 50 - _EPS else "tie"


def _share_verdict(share: float | None) -> str | None:
    return None if share is None else verdict_of(100.0 * share)


def majority(verdicts) -> str | None:
    votes = Counter(v for v in verdicts if v is not None)
    if not votes:
        return None
    (top, n), *rest = votes.most_common()
    return top if not rest or rest[0][1] < n else "tie"


def margins(row: dict) -> dict[str, int] | None:
    """``b`` minus ``a`` per metric for one parsed judgement."""
    if not row.get("parsed"):
        return None
    return {m: int(row[f"{m}_b"]) - int(row[f"{m}_a"]) for m in METRICS}


@dataclass
class RaterVerdicts:
    """One rater's view of every pair (lists aligned with the pairs)."""
    name: str
    verdicts: list[str | None] = field(default_factory=list)
    order_verdicts: list[tuple[str | None, ...]] = field(default_factory=list)  # one per order: (a_first, b_first)
    metric_verdicts: list[dict[str, str | None]] = field(default_factory=list)
    judgements: list[bool] = field(default_factory=list)  # parsed flag of every judgement it rests on
    scores: list[float | None] = field(default_factory=list)  # duel rule only: the pair's duel score


def _judge_view(orders: dict[str, dict | None], weights: dict[MetricName, float]) -> tuple:
    both = [orders.get(o) for o in ORDERS]
    ts = score_turn({"j": both}, weights)
    per_order = tuple(verdict_of(score_turn({"j": [orders.get(o)]}, weights).score) for o in ORDERS)
    parsed = [m for m in both if m is not None]
    cells = {m: (verdict_of(50 + sum(x[m] for x in parsed) / len(parsed)) if parsed else None) for m in METRICS}
    return verdict_of(ts.score), per_order, cells


def rater_verdicts(pairs: list[LabelledPair], rows: list[dict], panel: list[str],
                   weights: dict[MetricName, float]) -> dict[str, RaterVerdicts]:
    """Verdicts per rater: every judge of the panel, ``majority`` and ``duel_rule``."""
    by_pair: dict[str, dict[str, dict[str, dict | None]]] = defaultdict(lambda: defaultdict(dict))
    parsed_flags: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_pair[r["pair_id"]][r["judge"]][r["order"]] = margins(r)
        parsed_flags[r["pair_id"]][r["judge"]].append(bool(r.get("parsed")))
    raters = {j: RaterVerdicts(j) for j in panel}
    raters[MAJORITY], raters[DUEL_RULE] = RaterVerdicts(MAJORITY), RaterVerdicts(DUEL_RULE)
    for p in pairs:
        judged = by_pair.get(p.id, {})
        views = {j: _judge_view(judged.get(j, {}), weights) for j in panel}
        flags = [f for j in panel for f in parsed_flags.get(p.id, {}).get(j, [])]
        for j in panel:
            v, per_order, cells = views[j]
            rv = raters[j]
            rv.verdicts.append(v)
            rv.order_verdicts.append(per_order)
            rv.metric_verdicts.append(cells)
            rv.judgements.extend(parsed_flags.get(p.id, {}).get(j, []))
        maj = raters[MAJORITY]
        maj.verdicts.append(majority(views[j][0] for j in panel))
        maj.order_verdicts.append(tuple(majority(views[j][1][i] for j in panel) for i in range(len(ORDERS))))
        maj.metric_verdicts.append({m: majority(views[j][2][m] for j in panel) for m in METRICS})
        maj.judgements.extend(flags)
        duel = raters[DUEL_RULE]
        ts = score_turn({j: [judged.get(j, {}).get(o) for o in ORDERS] for j in panel}, weights)
        duel.scores.append(ts.score if ts.parsed else None)
        duel.verdicts.append(verdict_of(ts.score) if ts.parsed else None)
        per_order = []
        for o in ORDERS:
            t1 = score_turn({j: [judged.get(j, {}).get(o)] for j in panel}, weights)
            per_order.append(verdict_of(t1.score) if t1.parsed else None)
        duel.order_verdicts.append(tuple(per_order))
        duel.metric_verdicts.append({m: _share_verdict(ts.per_metric.get(m)) if ts.parsed else None for m in METRICS})
        duel.judgements.extend(flags)
    return raters
