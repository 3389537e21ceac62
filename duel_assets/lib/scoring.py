"""Judge-reply parsing, duel scores, buckets and the gate (DESIGN "Scoring"). No Dagster imports.

Definitions, fixed so verdicts are comparable:
* a judge reply parses when all five metrics carry integer scores 0-10 for both A and B;
* a cell (turn, judge, metric) is the challenger's margin averaged over the judge's parsed orders:
  > 0 win, = 0 tie, < 0 loss;
* duel score = 100 x weighted share of the turn's cells the challenger wins (tie = 1/2), over the
  judges that parsed in at least one order; a turn is parsed when at least half its judges parsed;
* gate: ACCEPT when mean(score - 50) >= min_margin, its bootstrap lower bound > 0 and the parsed
  fraction >= the minimum.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from .settings import METRICS, BucketConfig, GateConfig, MetricName

KING_FIRST = "king_first"
CHALLENGER_FIRST = "challenger_first"


@dataclass
class JudgeReply:
    parsed: bool
    scores: dict[str, dict[str, int]] | None = None  # metric -> {"A": int, "B": int}
    winner: str | None = None
    reason: str = ""
    error: str | None = None


def _json_candidates(text: str):
    """Yield JSON object substrings: fenced blocks first, then balanced {...} spans."""
    for m in re.finditer(r"```(?:json)?\s*\n?(.*?)```", text, re.DOTALL):
        yield m.group(1).strip()
    depth, start, in_str, esc = 0, None, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                yield text[start : i + 1]


def parse_judge_reply(text: str | None) -> JudgeReply:
    if not text or not text.strip():
        return JudgeReply(False, error="empty reply")
    body = re.sub(r"(?is)<think>.*?</think>", "", text)
    if "<think>" in body.lower():  # unclosed think: a truncated reply, keep what follows nothing
        body = body[: body.lower().index("<think>")]
    last_error = "JSON object is unterminated (truncated reply?)" if "{" in body else "no JSON object found"
    for cand in _json_candidates(body):
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            last_error = "JSON did not decode (truncated, or nested too deeply?)"
            continue
        if not isinstance(obj, dict) or "scores" not in obj:
            last_error = "JSON has no 'scores'"
            continue
        scores, err = _validate_scores(obj["scores"])
        if err:
            return JudgeReply(False, error=err)
        winner = obj.get("winner")
        winner = winner if winner in ("A", "B", "tie") else None
        return JudgeReply(True, scores=scores, winner=winner, reason=str(obj.get("reason") or "")[:2000])
    return JudgeReply(False, error=last_error)


def _validate_scores(raw) -> tuple[dict | None, str | None]:
    if not isinstance(raw, dict):
        return None, "'scores' is not an object"
    out = {}
    for m in METRICS:
        cell = raw.get(m)
        if not isinstance(cell, dict):
            return None, f"metric '{m}' missing"
        pair = {}
        for side in ("A", "B"):
            v = cell.get(side)
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                return None, f"'{m}'.{side} is not an integer"
            v = int(v)
            if not 0 <= v <= 10:
                return None, f"'{m}'.{side}={v} out of range 0-10"
            pair[side] = v
        out[m] = pair
    return out, None


def sides(order: str) -> tuple[str, str]:
    """(challenger's label, opponent's label) in a judgement of this order."""
    return ("B", "A") if order == KING_FIRST else ("A", "B")


def side_scores(reply: JudgeReply, order: str) -> dict[str, int]:
    """A parsed judgement as judge_scores columns: ``<metric>_challenger`` and ``<metric>_opponent``."""
    assert reply.scores is not None, "side_scores of a reply that did not parse"
    c, o = sides(order)
    out = {}
    for m in METRICS:
        out[f"{m}_challenger"] = reply.scores[m][c]
        out[f"{m}_opponent"] = reply.scores[m][o]
    return out


def row_margins(row: dict) -> dict[str, int] | None:
    """Per-metric challenger minus opponent score of one judgement (a judge_scores row, or the
    :func:`side_scores` of a reply); None when it did not parse. The one margin rule."""
    if not row.get("parsed"):
        return None
    return {m: int(row[f"{m}_challenger"]) - int(row[f"{m}_opponent"]) for m in METRICS}


def challenger_margins(reply: JudgeReply, order: str) -> dict[str, int] | None:
    """:func:`row_margins` of a reply judged in ``order``."""
    if not reply.parsed or reply.scores is None:
        return None
    return row_margins({"parsed": True, **side_scores(reply, order)})


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


def bucket_counts(verdict_rows: list[dict]) -> dict[str, int]:
    """Turns per bucket; a turn without a parsed score counts as ``parse-fail``. Excluded turns are
    not here (see :func:`excluded_counts`): they are never parse-fail."""
    return dict(Counter(r["bucket"] or "parse-fail" for r in verdict_rows if not r.get("excluded_reason")))


def excluded_counts(verdict_rows: list[dict]) -> dict[str, int]:
    """Excluded turns by their ``excluded_reason``."""
    return dict(Counter(r["excluded_reason"] for r in verdict_rows if r.get("excluded_reason")))


def bucket_for(score: float | None, buckets: BucketConfig) -> str | None:
    if score is None:
        return None
    if score >= buckets.final:
        return "final"
    if score >= buckets.refined:
        return "refined"
    return "defeat"


def bootstrap_means(values: np.ndarray, resamples: int, seed: int = 0, chunk_bytes: int = 256 << 20,
                    max_levels: int = 256, exact_draws: int = 20_000_000) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples (n draws with replacement) of ``values``.

    Resampling n items with replacement is the same as drawing multinomial counts over the distinct
    values, so when scores take at most ``max_levels`` distinct values (duel scores usually do) it
    costs O(resamples x levels) instead of O(resamples x n). With more distinct values, indices are
    drawn (in chunks that bound memory) while resamples x n stays within ``exact_draws``; beyond
    that the values are grouped into ``max_levels`` equal-width bins, each standing for its count at
    its own mean. The point estimate stays exact, and the spread loses only the variance within a
    bin (at most width²/12: 0.013 for scores 0-100 in 256 bins), negligible next to the spread of
    duel scores. Every path costs at most about resamples x max(levels, exact_draws / resamples).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return np.empty(0)
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(values, return_counts=True)
    if levels.size > max_levels and n * resamples > exact_draws and max_levels > 0:
        edges = np.linspace(levels[0], levels[-1], max_levels + 1)
        which = np.clip(np.searchsorted(edges, levels, side="right") - 1, 0, max_levels - 1)
        bin_counts = np.bincount(which, weights=counts, minlength=max_levels)
        bin_sums = np.bincount(which, weights=levels * counts, minlength=max_levels)
        used = bin_counts > 0
        counts, levels = bin_counts[used].astype(np.int64), bin_sums[used] / bin_counts[used]
    if levels.size <= max_levels:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ levels / n
    out = np.empty(resamples)
    rows = max(1, min(resamples, chunk_bytes // max(1, n * 8)))
    for s in range(0, resamples, rows):
        e = min(resamples, s + rows)
        idx = rng.integers(0, n, size=(e - s, n))
        out[s:e] = values[idx].mean(axis=1)
    return out


def bootstrap_lower_bound(values, resamples: int, confidence: float, seed: int = 0) -> float | None:
    vals = np.asarray(values, dtype=np.float64)
    if vals.size == 0:
        return None
    means = bootstrap_means(vals, resamples, seed)
    return float(np.quantile(means, 1.0 - confidence))


@dataclass
class Gate:
    verdict: str  # ACCEPT | REJECT
    turns: int
    parsed_turns: int
    parsed_fraction: float
    mean_margin: float | None
    lower_bound: float | None
    min_margin: float
    min_parsed_fraction: float
    confidence: float
    resamples: int
    reasons: list[str]
    excluded: dict[str, int] = field(default_factory=dict)  # turns left out of the gate, by reason

    def to_dict(self) -> dict:
        return asdict(self)


def gate(scores: list[float | None], cfg: GateConfig, seed: int = 0, excluded: dict[str, int] | None = None) -> Gate:
    """The gate over ``scores`` (None: a turn that did not parse). Excluded turns are not in
    ``scores`` at all; ``excluded`` only records how many were left out, by reason."""
    parsed = np.array([s for s in scores if s is not None], dtype=np.float64)
    n = len(scores)
    frac = (parsed.size / n) if n else 0.0
    margins = parsed - 50.0
    mean = float(margins.mean()) if parsed.size else None
    lcb = bootstrap_lower_bound(margins, cfg.resamples, cfg.confidence, seed) if parsed.size else None
    reasons = []
    if mean is None or mean < cfg.min_margin:
        reasons.append(f"mean margin {mean if mean is None else round(mean, 2)} < minimum {cfg.min_margin}")
    if lcb is None or lcb <= 0:
        reasons.append(f"bootstrap {cfg.confidence:.0%} lower bound {lcb if lcb is None else round(lcb, 2)} is not > 0")
    if frac < cfg.min_parsed_fraction:
        reasons.append(f"parsed fraction {frac:.2f} < minimum {cfg.min_parsed_fraction}")
    return Gate(
        verdict="REJECT" if reasons else "ACCEPT", turns=n, parsed_turns=int(parsed.size), parsed_fraction=round(frac, 4),
        mean_margin=None if mean is None else round(mean, 3), lower_bound=None if lcb is None else round(lcb, 3),
        min_margin=cfg.min_margin, min_parsed_fraction=cfg.min_parsed_fraction, confidence=cfg.confidence,
        resamples=cfg.resamples, reasons=reasons, excluded=dict(excluded or {}),
    )
