"""Duel-score thresholds from a calibration: how high must a score be to trust "challenger better"?

Every pair with a duel-rule score is a duel turn in which ``b`` is the challenger; it is a
*positive* when its label is ``"B"`` (``b`` really better; ``A`` and ``tie`` are negatives). For a
threshold t the precision is the share of positives among pairs scoring ≥ t, with its Wilson 95%
lower bound. Suggested thresholds (the lowest t from which on, for every higher threshold too):

* ``refined``: the measured precision reaches the target;
* ``final``: the lower 95% bound of the precision reaches the target (the same claim, held with
  confidence on this set's size).

Precision depends on the share of positives: a generated set has about half its non-tie pairs
positive; a duel whose challenger is rarely better needs a higher threshold for the same precision.
"""
from __future__ import annotations

import math

DEFAULT_TARGET_PRECISION = 0.9
Z95 = 1.959964


def wilson_lower(successes: int, n: int, z: float = Z95) -> float:
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def precision_table(scores: list[float | None], labels: list[str]) -> list[dict]:
    """One row per distinct score t (highest first): pairs scoring >= t, positives among them."""
    scored = [(s, lab == "B") for s, lab in zip(scores, labels) if s is not None]
    positives = sum(pos for _, pos in scored)
    rows = []
    for t in sorted({s for s, _ in scored}, reverse=True):
        sel = [pos for s, pos in scored if s >= t]
        tp = sum(sel)
        rows.append({"threshold": round(t, 3), "selected": len(sel), "positives": tp,
                     "precision": round(tp / len(sel), 4), "precision_lower95": round(wilson_lower(tp, len(sel)), 4),
                     "recall": round(tp / positives, 4) if positives else None})
    return rows


def _lowest(rows: list[dict], key: str, target: float) -> tuple[float | None, float | None]:
    """(lowest threshold reaching the target, the next lower score): every threshold in between
    selects the same pairs."""
    best, below = None, None
    for i, r in enumerate(rows):  # highest threshold first: stop at the first that misses the target
        if r[key] < target:
            break
        best, below = r["threshold"], rows[i + 1]["threshold"] if i + 1 < len(rows) else None
    return best, below


def _at(scores: list[float | None], labels: list[str], t: float) -> dict:
    sel = [lab == "B" for s, lab in zip(scores, labels) if s is not None and s >= t]
    positives = sum(lab == "B" for s, lab in zip(scores, labels) if s is not None)
    tp = sum(sel)
    return {"threshold": t, "selected": len(sel), "precision": round(tp / len(sel), 4) if sel else None,
            "precision_lower95": round(wilson_lower(tp, len(sel)), 4) if sel else None,
            "recall": round(tp / positives, 4) if positives else None}


def suggest_thresholds(scores: list[float | None], labels: list[str], target: float,
                       final: float, refined: float) -> dict:
    """Suggested ``final`` / ``refined`` thresholds for ``target`` precision beside the configured ones."""
    rows = precision_table(scores, labels)
    s_final, final_below = _lowest(rows, "precision_lower95", target)
    s_refined, refined_below = _lowest(rows, "precision", target)
    return {
        "target_precision": target,
        "scored_pairs": sum(s is not None for s in scores),
        "positives": sum(lab == "B" for s, lab in zip(scores, labels) if s is not None),
        "suggested": {"final": s_final, "refined": s_refined},
        "next_lower_score": {"final": final_below, "refined": refined_below},
        "configured": {"final": _at(scores, labels, final), "refined": _at(scores, labels, refined)},
        "table": rows,
    }
