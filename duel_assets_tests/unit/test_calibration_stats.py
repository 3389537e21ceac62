"""Verdicts, agreement figures and thresholds on small hand-made cases with known answers."""
import pytest

from duel_assets.lib.calibration.measures import DUEL_RULE, MAJORITY, majority, rater_verdicts, verdict_of
from duel_assets.lib.calibration.pairs import LabelledPair
from duel_assets.lib.calibration.stats import figures, kappa, rate
from duel_assets.lib.calibration.thresholds import precision_table, suggest_thresholds, wilson_lower
from duel_assets.lib.settings import METRICS

W = {m: 1.0 for m in METRICS}


def pair(pid, label, **kw):
    return LabelledPair(id=pid, history=[{"role": "user", "content": "t"}], a={"role": "assistant", "content": "x"},
                        b={"role": "assistant", "content": "y"}, label=label, **kw)


def row(pid, judge, order, a, b):
    """A parsed judgement scoring every metric a vs b (None: unparsed)."""
    r = {"pair_id": pid, "judge": judge, "order": order, "parsed": a is not None}
    if a is not None:
        r.update({f"{m}_a": a for m in METRICS} | {f"{m}_b": b for m in METRICS})
    return r


def test_kappa_and_rates_on_known_tables():
    labels = ["A"] * 25 + ["B"] * 25
    verdicts = ["A"] * 20 + ["B"] * 5 + ["A"] * 10 + ["B"] * 15  # po 0.7, pe 0.5
    k, ci = kappa(labels, verdicts, 1000)
    assert k == pytest.approx(0.4) and ci[0] < 0.4 < ci[1]
    assert kappa(labels, labels, 200)[0] == 1.0
    assert kappa(labels, ["A"] * 50, 200)[0] == 0.0  # a constant rater agrees only by chance
    share, (lo, hi) = rate([True] * 8 + [False] * 2, 2000)
    assert share == 0.8 and lo < 0.8 < hi and hi <= 1.0
    assert rate([], 100) == (None, None)
    assert wilson_lower(9, 10) == pytest.approx(0.5958, abs=1e-4)


def test_verdict_rules():
    assert [verdict_of(s) for s in (100, 50.0000000001, 50, 49, None)] == ["B", "tie", "tie", "A", None]
    assert majority(["A", "A", "B"]) == "A" and majority(["A", "B"]) == "tie" and majority([None, "B"]) == "B"
    assert majority([None]) is None


def test_orders_positions_and_panel_rules():
    pairs = [pair("p1", "B", kind="k1", metric_labels={"grounding": "B"}), pair("p2", "A", kind="k2"), pair("p3", "tie", kind="k1")]
    rows = [
        # j1: right and consistent on p1 (b better in both orders), position-biased on p2, tie on p3
        row("p1", "j1", "a_first", 3, 8), row("p1", "j1", "b_first", 3, 8),
        row("p2", "j1", "a_first", 8, 3), row("p2", "j1", "b_first", 3, 8),
        row("p3", "j1", "a_first", 5, 5), row("p3", "j1", "b_first", 5, 5),
        # j2: p1 right in one order only (the other unparsed), p2 right, p3 says a
        row("p1", "j2", "a_first", 2, 9), row("p1", "j2", "b_first", None, None),
        row("p2", "j2", "a_first", 9, 2), row("p2", "j2", "b_first", 9, 2),
        row("p3", "j2", "a_first", 7, 4), row("p3", "j2", "b_first", 7, 4),
    ]
    r = rater_verdicts(pairs, rows, ["j1", "j2"], W)
    assert r["j1"].verdicts == ["B", "tie", "tie"] and r["j1"].order_verdicts[1] == ("A", "B")
    assert r["j2"].verdicts == ["B", "A", "A"] and r["j2"].order_verdicts[0] == ("B", None)
    assert r[MAJORITY].verdicts == ["B", "tie", "tie"]
    assert r[DUEL_RULE].verdicts == ["B", "A", "A"] and r[DUEL_RULE].scores == [100.0, 25.0, 25.0]
    f1 = figures(r["j1"], pairs, 200)
    assert f1["accuracy"] == 0.5 and f1["accuracy_with_ties"] == pytest.approx(2 / 3, abs=1e-4)
    assert f1["position_consistency"] == pytest.approx(2 / 3, abs=1e-4) and f1["parse_rate"] == 1.0
    assert f1["tie_rate"] == pytest.approx(2 / 3, abs=1e-4) and f1["by_kind"]["k1"] == {"accuracy": 1.0, "pairs": 2}
    assert f1["per_metric"] == {"grounding": {"agreement": 1.0, "pairs": 1}}
    f2 = figures(r["j2"], pairs, 200)
    assert f2["parse_rate"] == pytest.approx(5 / 6, abs=1e-4) and f2["pairs_in_both_orders"] == 2
    assert f2["accuracy"] == 1.0 and f2["accuracy_with_ties"] == pytest.approx(2 / 3, abs=1e-4)


def test_thresholds_from_scores():
    scores = [100, 100, 100, 100, 90, 90, 60, 60, 40, 0, None]
    labels = ["B", "B", "B", "B", "B", "A", "B", "A", "tie", "A", "B"]
    table = precision_table(scores, labels)
    assert [r["threshold"] for r in table] == [100, 90, 60, 40, 0]
    assert table[0]["precision"] == 1.0 and table[1]["precision"] == pytest.approx(5 / 6, abs=1e-4)
    th = suggest_thresholds(scores, labels, 0.8, final=80, refined=66)
    assert th["suggested"]["refined"] == 90 and th["next_lower_score"]["refined"] == 60
    assert th["suggested"]["final"] is None  # 4 of 4 is not enough for a lower bound of 0.8
    assert th["configured"]["final"]["precision"] == pytest.approx(5 / 6, abs=1e-4)
    assert th["configured"]["refined"]["selected"] == 6 and th["scored_pairs"] == 10 and th["positives"] == 6
