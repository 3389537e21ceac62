"""A partition's turns as the review page lists them: per-turn figures, the filters, sorting and the
review queue.

A judge's verdict on a turn follows the duel's own rule: the judge's score for the turn (its share
of the metric cells the challenger wins, tie = 1/2) above 50 is the challenger, below 50 the
opponent, 50 a tie. The same rule over one order's scores gives the judge's verdict in that order.

* **split panel**: the judges of a turn do not all give the same verdict;
* **flips with the order**: a judge's verdict with the king first differs from its verdict with
  the challenger first;
* **judges disagree**: either of the two;
* **near a threshold**: the score is within ``near`` points of the ``final`` or ``refined`` threshold
  the partition was bucketed with;
* **parse failures**: a judgement that did not parse (after its retry), or a turn left unparsed.

The review queue puts disagreements first, then near-threshold turns (closest first), then the
other parsed turns, then unparsed ones; excluded turns (no answers to compare) are not in it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..settings import METRICS
from ..verdict.replies import CHALLENGER_FIRST, KING_FIRST, row_margins

NEAR_POINTS = 5.0
SKIPPED = "skipped"  # a judge not asked because the turn's bucket was already decided
FILTERS = {
    "disagree": "judges disagree",
    "near": "near a threshold",
    "leak": "leak suspects",
    "parse_fail": "parse failures",
    "excluded": "excluded",
}
SORTS = ("queue", "turn", "score", "bucket", "spread", "leak", "excluded")
BUCKET_ORDER = {"final": 0, "refined": 1, "defeat": 2, None: 3}


def side(score: float | None) -> str | None:
    """``challenger``, ``opponent`` or ``tie`` for a judge score (0-100) on the duel's rule."""
    if score is None:
        return None
    return "challenger" if score > 50 else "opponent" if score < 50 else "tie"


def order_score(row: dict, weights: Mapping[Any, float]) -> float | None:
    """One judgement's score, 0-100: the weighted share of metric cells the challenger wins in it."""
    margins = row_margins(row)
    if margins is None:
        return None
    total = sum(weights.get(m, 1.0) for m in METRICS)
    won = sum(weights.get(m, 1.0) * (1.0 if margins[m] > 0 else 0.5 if margins[m] == 0 else 0.0) for m in METRICS)
    return 100.0 * won / total if total else 50.0


@dataclass
class TurnView:
    turn_id: str
    position: int  # its place in the prompt file
    instance_id: str | None = None
    step: int | None = None
    score: float | None = None
    bucket: str | None = None
    bucket_note: str | None = None
    parsed: bool | None = None
    excluded_reason: str | None = None
    unparsed_reason: str | None = None
    leak_suspect: bool = False
    per_judge: dict[str, float] = field(default_factory=dict)
    flips: list[str] = field(default_factory=list)  # judges whose verdict changes with the order
    parse_failures: int = 0  # judgements that did not parse
    near: float | None = None  # distance to the nearest bucket threshold, when within ``near`` points
    labelled: bool = False

    @property
    def spread(self) -> float | None:
        scores = list(self.per_judge.values())
        return round(max(scores) - min(scores), 3) if len(scores) > 1 else None

    @property
    def split(self) -> bool:
        return len({side(s) for s in self.per_judge.values()}) > 1

    @property
    def disagree(self) -> bool:
        return self.split or bool(self.flips)

    @property
    def verdicted(self) -> bool:
        return self.parsed is not None or self.excluded_reason is not None


def turn_views(turns: list[dict], verdicts: list[dict], judges: list[dict], thresholds: Mapping[str, float],
               weights: Mapping[Any, float], near: float = NEAR_POINTS,
               labelled: Iterable[str] = ()) -> list[TurnView]:
    """One view per turn of the partition, in prompt-file order (turns with a verdict but no sampled
    row, which should not happen, come last)."""
    done = set(labelled)
    by_verdict = {v["turn_id"]: v for v in verdicts}
    order_sides: dict[str, dict[str, dict[str, str | None]]] = {}
    failures: dict[str, int] = {}
    for j in judges:
        if j.get("error_kind") == SKIPPED:
            continue
        if not j.get("parsed"):
            failures[j["turn_id"]] = failures.get(j["turn_id"], 0) + 1
            continue
        order_sides.setdefault(j["turn_id"], {}).setdefault(j["judge"], {})[j["order"]] = side(order_score(j, weights))
    ids = [t["turn_id"] for t in turns] + [v["turn_id"] for v in verdicts if v["turn_id"] not in {t["turn_id"] for t in turns}]
    info = {t["turn_id"]: t for t in turns}
    out = []
    for i, tid in enumerate(ids):
        v, t = by_verdict.get(tid, {}), info.get(tid, {})
        view = TurnView(turn_id=tid, position=i, instance_id=t.get("instance_id") or None, step=t.get("step"),
                        score=v.get("score"), bucket=v.get("bucket"), bucket_note=v.get("bucket_note"),
                        parsed=v.get("parsed"), excluded_reason=v.get("excluded_reason"),
                        unparsed_reason=v.get("unparsed_reason"), leak_suspect=bool(v.get("leak_suspect")),
                        per_judge={k: float(x) for k, x in (v.get("per_judge") or {}).items() if x is not None},
                        parse_failures=failures.get(tid, 0), labelled=tid in done)
        view.flips = sorted(j for j, o in order_sides.get(tid, {}).items()
                            if KING_FIRST in o and CHALLENGER_FIRST in o and o[KING_FIRST] != o[CHALLENGER_FIRST])
        if view.score is not None:
            gap = min(abs(view.score - float(thresholds[b])) for b in ("final", "refined"))
            view.near = round(gap, 3) if gap <= near else None
        out.append(view)
    return out


def matches(view: TurnView, name: str | None, bucket: str | None = None) -> bool:
    if bucket and (view.bucket or ("parse-fail" if view.parsed is False else None)) != bucket:
        return False
    if not name:
        return True
    return {
        "disagree": view.disagree,
        "near": view.near is not None,
        "leak": view.leak_suspect,
        "parse_fail": view.parse_failures > 0 or view.parsed is False,
        "excluded": view.excluded_reason is not None,
    }[name]


def queue_rank(view: TurnView) -> tuple:
    """Where a turn stands in the review queue (smaller first)."""
    if view.disagree:
        group = 0
    elif view.near is not None:
        group = 1
    elif view.parsed:
        group = 2
    else:
        group = 3
    return (group, view.near if view.near is not None else 1e9, view.position)


def in_queue(view: TurnView) -> bool:
    return view.excluded_reason is None and view.verdicted


def queue(views: list[TurnView]) -> list[TurnView]:
    """The turns still to label, in review order."""
    return sorted((v for v in views if in_queue(v) and not v.labelled), key=queue_rank)


def next_after(views: list[TurnView], current: str | None) -> TurnView | None:
    """The first turn of the queue other than ``current``."""
    return next((v for v in queue(views) if v.turn_id != current), None)


def sort_views(views: list[TurnView], by: str, descending: bool = False) -> list[TurnView]:
    """Sorted by a column; turns without a value for it go last either way."""
    if by not in SORTS:
        raise ValueError(f"sort: got {by!r}; allowed: {', '.join(SORTS)}")
    if by == "queue":
        return sorted(views, key=lambda v: (not in_queue(v), v.labelled, queue_rank(v)))
    keyed = {
        "turn": lambda v: v.position,
        "score": lambda v: v.score,
        "bucket": lambda v: BUCKET_ORDER.get(v.bucket, 3) if v.verdicted and not v.excluded_reason else None,
        "spread": lambda v: v.spread,
        "leak": lambda v: int(v.leak_suspect),
        "excluded": lambda v: v.excluded_reason,
    }[by]
    have = [v for v in views if keyed(v) is not None]
    missing = [v for v in views if keyed(v) is None]
    return sorted(have, key=lambda v: (keyed(v), v.position), reverse=descending) + missing


def counts(views: list[TurnView]) -> dict[str, int]:
    """How many turns each filter keeps."""
    return {name: sum(matches(v, name) for v in views) for name in FILTERS}
