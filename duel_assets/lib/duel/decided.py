"""When the judgements already in fix a turn's bucket, whatever the rest would say.

The duel score (``verdict.scores.score_turn``) averages, over the judges that parsed in at least one
order, each judge's weighted share of metric cells the challenger wins; a cell's outcome is the sign
of the challenger's margin averaged over that judge's parsed orders; a turn is parsed when at least
half its judges parsed. So, given the judgements in so far, every judge still out can only:

* not parse at all (it then does not count: a judge with no parsed order leaves the average), or
* parse, with any scores: per metric, any outcome whose sign the pending orders' margins (each in
  [-10, 10]) can still reach from the margins already in.

:func:`score_bounds` takes the lowest and highest score over all those possibilities. When both fall
in the same bucket and the turn is parsed whatever happens, the remaining judge calls cannot change
the verdict and need not be sent. The bucket (not the score) is what stays exact.
"""
from __future__ import annotations

from ..settings import METRICS, MetricName
from ..verdict.buckets import bucket_for

MAX_MARGIN = 10


def _signs(total: int, parsed: int, pending: int) -> set[float]:
    """Outcomes (1, 0.5, 0) a cell can end with: ``total`` is the sum of margins over ``parsed``
    orders, ``pending`` orders may add any margin in [-10, 10] each or nothing."""
    def outcome(x: float) -> float:
        return 1.0 if x > 0 else 0.5 if x == 0 else 0.0
    out = {outcome(total)} if parsed else set()
    if pending:
        lo, hi = total - MAX_MARGIN * pending, total + MAX_MARGIN * pending
        out |= {outcome(x) for x in (lo, hi, 0) if lo <= x <= hi}
    return out


def _judge_range(orders: list[dict[str, int] | None], pending: int, weights: dict[MetricName, float]) -> tuple[float, float, bool, bool]:
    """(lowest, highest) judge score, whether the judge surely counts, whether it may count."""
    parsed = [o for o in orders if o is not None]
    if not parsed and not pending:  # finished without a parsed order: it does not count
        return 0.0, 0.0, False, False
    total_w = sum(weights[m] for m in METRICS) or 1.0
    lo = hi = 0.0
    for m in METRICS:
        signs = _signs(sum(o[m] for o in parsed), len(parsed), pending)
        lo += weights[m] * min(signs)
        hi += weights[m] * max(signs)
    return 100.0 * lo / total_w, 100.0 * hi / total_w, bool(parsed), bool(parsed) or pending > 0


def _extreme_mean(sure: list[float], optional: list[float], lowest: bool) -> float | None:
    """Lowest (or highest) mean of ``sure`` plus any subset of ``optional``."""
    vals = list(sure)
    for v in sorted(optional, reverse=not lowest):
        mean = sum(vals) / len(vals) if vals else None
        if mean is None or (v < mean if lowest else v > mean):
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


def score_bounds(done: dict[str, list[dict[str, int] | None]], pending: dict[str, int],
                 weights: dict[MetricName, float]) -> tuple[float | None, float | None, bool]:
    """(lowest score, highest score, surely parsed) of a turn. ``done[judge]`` holds one entry per
    finished order (margins, or None when it did not parse); ``pending[judge]`` counts its orders
    still out. Every judge of the panel appears in at least one of them."""
    sure_lo, sure_hi, opt_lo, opt_hi = [], [], [], []
    counted = 0
    judges = set(done) | set(pending)
    for j in judges:
        lo, hi, surely, maybe = _judge_range(done.get(j, []), pending.get(j, 0), weights)
        if surely:
            counted += 1
            sure_lo.append(lo)
            sure_hi.append(hi)
        elif maybe:
            opt_lo.append(lo)
            opt_hi.append(hi)
    surely_parsed = counted * 2 >= len(judges) > 0
    return _extreme_mean(sure_lo, opt_lo, True), _extreme_mean(sure_hi, opt_hi, False), surely_parsed


def decided_bucket(done, pending, weights, buckets) -> str | None:
    """The bucket the turn will get whatever the pending judgements say, or None."""
    if not any(pending.values()):
        return None
    lo, hi, surely_parsed = score_bounds(done, pending, weights)
    if not surely_parsed or lo is None or hi is None:
        return None
    b_lo, b_hi = bucket_for(lo, buckets), bucket_for(hi, buckets)
    return b_lo if b_lo == b_hi else None
