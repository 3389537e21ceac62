"""Agreement figures of one rater against the labels, each with a bootstrap 95% interval.

* ``accuracy``: over pairs labelled ``A`` or ``B`` that the rater gave a verdict, the share whose
  verdict equals the label (a ``tie`` verdict there counts as wrong); ``accuracy_with_ties``: over
  every pair with a verdict, ties included;
* ``kappa``: Cohen's kappa between verdicts and labels over the categories A / B / tie;
* ``position_consistency``: over pairs judged in both orders, the share whose two one-order
  verdicts agree (about ``a`` and ``b``, not about positions);
* ``parse_rate``: parsed judgements / judgements (after the duel's one retry); ``tie_rate``: tie
  verdicts / verdicts; ``verdict_rate``: pairs with a verdict / pairs;
* ``by_kind``: accuracy (ties included) per pair kind; ``per_metric``: agreement with
  ``metric_labels`` where a pair has them.

Intervals resample pairs (judgements, for the parse rate) with replacement, ``resamples`` times
with a fixed seed, and take the 2.5 and 97.5 percentiles; kappa is recomputed per resample.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..settings import METRICS
from ..verdict.gate import bootstrap_means
from .measures import RaterVerdicts
from .pairs import LabelledPair

CATS = ("A", "B", "tie")


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _interval(draws: np.ndarray, nd: int = 4) -> list[float]:
    """The 95% interval of finite bootstrap draws."""
    return [round(float(np.quantile(draws, q)), nd) for q in (0.025, 0.975)]


def rate(values: list[bool], resamples: int, seed: int = 0) -> tuple[float | None, list[float] | None]:
    """A share and its bootstrap 95% interval; (None, None) without values."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(arr, resamples, seed)
    return _round(arr.mean()), _interval(means)


def _kappa(table: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion tables (..., 3, 3); NaN where chance agreement is total."""
    n = table.sum(axis=(-2, -1))
    po = np.trace(table, axis1=-2, axis2=-1) / n
    pe = (table.sum(axis=-1) * table.sum(axis=-2)).sum(axis=-1) / n ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def kappa(labels: list[str], verdicts: list[str], resamples: int, seed: int = 0) -> tuple[float | None, list[float] | None]:
    if not labels:
        return None, None
    cells = np.array([CATS.index(lab) * 3 + CATS.index(v) for lab, v in zip(labels, verdicts)])
    counts = np.bincount(cells, minlength=9).astype(np.float64)
    k = float(_kappa(counts.reshape(3, 3)))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(cells), counts / counts.sum(), size=resamples).reshape(resamples, 3, 3)
    ks = _kappa(draws.astype(np.float64))
    ks = ks[np.isfinite(ks)]
    return _round(k), _interval(ks) if ks.size else None


def figures(rv: RaterVerdicts, pairs: list[LabelledPair], resamples: int = 2000, seed: int = 0) -> dict:
    """Every figure of one rater (see the module docstring), intervals under ``<figure>_ci``."""
    with_v = [(p, v) for p, v in zip(pairs, rv.verdicts) if v is not None]
    out: dict = {"pairs": len(pairs), "verdicts": len(with_v)}

    def put(name: str, value_ci: tuple) -> None:
        out[name], out[f"{name}_ci"] = value_ci

    put("accuracy", rate([v == p.label for p, v in with_v if p.label != "tie"], resamples, seed))
    put("accuracy_with_ties", rate([v == p.label for p, v in with_v], resamples, seed + 1))
    put("kappa", kappa([p.label for p, _ in with_v], [v for _, v in with_v], resamples, seed + 2))
    both = [a == b for a, b in rv.order_verdicts if a is not None and b is not None]
    put("position_consistency", rate(both, resamples, seed + 3))
    put("parse_rate", rate(rv.judgements, resamples, seed + 4))
    put("tie_rate", rate([v == "tie" for _, v in with_v], resamples, seed + 5))
    out["verdict_rate"] = _round(len(with_v) / len(pairs)) if pairs else None
    out["pairs_in_both_orders"] = len(both)
    kinds: dict[str, list[bool]] = defaultdict(list)
    for p, v in with_v:
        kinds[p.kind or "(none)"].append(v == p.label)
    out["by_kind"] = {k: {"accuracy": _round(float(np.mean(x))), "pairs": len(x)} for k, x in sorted(kinds.items())}
    metric: dict[str, list[bool]] = defaultdict(list)
    for p, cells in zip(pairs, rv.metric_verdicts):
        for m, lab in p.metric_labels.items():
            if cells.get(m) is not None:
                metric[m].append(cells[m] == lab)
    out["per_metric"] = {m: {"agreement": _round(float(np.mean(metric[m]))), "pairs": len(metric[m])}
                         for m in METRICS if metric.get(m)}
    return out
