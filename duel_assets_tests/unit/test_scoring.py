"""Scoring rules with hand-computed cases (pure code, no Dagster)."""
import json

import numpy as np
import pytest

from duel_assets.lib.settings import METRICS, BucketConfig, GateConfig
from duel_assets.lib.verdict.buckets import bucket_for
from duel_assets.lib.verdict.gate import bootstrap_means, gate
from duel_assets.lib.verdict.replies import (
    CHALLENGER_FIRST,
    KING_FIRST,
    JudgeReply,
    challenger_margins,
    parse_judge_reply,
    row_margins,
    side_scores,
)
from duel_assets.lib.verdict.scores import score_turn

W = {m: 1.0 for m in METRICS}


def reply(a: int, b: int, **per_metric) -> JudgeReply:
    scores = {m: {"A": a, "B": b} for m in METRICS}
    for m, (x, y) in per_metric.items():
        scores[m] = {"A": x, "B": y}
    return JudgeReply(True, scores=scores, winner="A" if a > b else "B" if b > a else "tie")


def margins(judge_replies: dict) -> dict:
    """{judge: {order: JudgeReply|None}} -> the score_turn input."""
    return {j: [challenger_margins(r, o) if r else None for o, r in orders.items()] for j, orders in judge_replies.items()}


def test_a_reply_and_its_stored_row_give_the_same_margins():
    r = reply(5, 5, correctness=(4, 7), progress=(8, 2))
    for order in (KING_FIRST, CHALLENGER_FIRST):
        row = {"parsed": True, **side_scores(r, order)}  # what judge_scores stores
        assert row_margins(row) == challenger_margins(r, order)
    assert challenger_margins(r, KING_FIRST)["correctness"] == 3 and challenger_margins(r, CHALLENGER_FIRST)["correctness"] == -3
    assert row_margins({"parsed": False}) is None and challenger_margins(JudgeReply(False), KING_FIRST) is None


def test_always_position_a_judge_scores_50_under_swap():
    biased = reply(9, 3)  # prefers whatever is shown first
    ts = score_turn(margins({"j": {KING_FIRST: biased, CHALLENGER_FIRST: biased}}), W)
    assert ts.parsed and ts.score == 50.0
    assert all(v == 0.5 for v in ts.per_metric.values())


def test_without_swap_the_same_judge_decides_by_position():
    ts = score_turn(margins({"j": {CHALLENGER_FIRST: reply(9, 3)}}), W)
    assert ts.score == 100.0
    ts = score_turn(margins({"j": {KING_FIRST: reply(9, 3)}}), W)
    assert ts.score == 0.0


def test_hand_computed_score_with_weights_and_ties():
    # king first, so challenger is B: correctness win, grounding tie, progress loss, protocol win, efficiency tie
    r = reply(5, 5, correctness=(4, 7), progress=(8, 2), protocol=(3, 9))
    ts = score_turn(margins({"j": {KING_FIRST: r}}), W)
    assert ts.score == pytest.approx(100 * (1 + 0.5 + 0 + 1 + 0.5) / 5)  # 60
    w = {**W, "correctness": 3.0}
    ts = score_turn(margins({"j": {KING_FIRST: r}}), w)
    assert ts.score == pytest.approx(100 * (3 + 0.5 + 0 + 1 + 0.5) / 7)


def test_margin_is_averaged_over_orders_before_win_tie_loss():
    # order 1: challenger +3 on every metric; order 2: challenger -1 -> mean +1 -> a win everywhere
    ts = score_turn(margins({"j": {KING_FIRST: reply(2, 5), CHALLENGER_FIRST: reply(4, 5)}}), W)
    assert ts.score == 100.0


def test_parse_failures_are_never_ties():
    win = reply(2, 9)  # king first: challenger (B) wins every metric
    # two judges, one failed both orders: the turn is parsed (1 of 2 >= half) and scored by the parsed judge only
    ts = score_turn(margins({"good": {KING_FIRST: win, CHALLENGER_FIRST: None}, "bad": {KING_FIRST: None, CHALLENGER_FIRST: None}}), W)
    assert ts.parsed and ts.score == 100.0 and ts.judges_parsed == 1 and ts.judges_total == 2
    # three judges, two failed: not parsed, no score
    ts = score_turn(margins({"a": {KING_FIRST: win}, "b": {KING_FIRST: None}, "c": {KING_FIRST: None}}), W)
    assert not ts.parsed and ts.score is None
    # parse failures lower the parsed fraction of the gate
    g = gate([100.0, 100.0, None, None], GateConfig(min_parsed_fraction=0.8, resamples=200))
    assert g.parsed_fraction == 0.5 and g.verdict == "REJECT"
    assert any("parsed fraction" in r for r in g.reasons)


@pytest.mark.parametrize("text", [
    '{"scores": %s, "winner": "B", "reason": "ok"}',
    'Here you go:\n```json\n{"scores": %s, "winner": "B", "reason": "ok"}\n```\nThanks!',
    '<think>Let me weigh {A} against {B}.</think>\n{"scores": %s, "winner": "B", "reason": "ok"}',
    'My verdict is {"scores": %s, "winner": "B", "reason": "braces } in \\"text\\" {"} and that is all.',
])
def test_parses_real_world_reply_shapes(text):
    scores = json.dumps({m: {"A": 3, "B": 8} for m in METRICS})
    r = parse_judge_reply(text % scores)
    assert r.parsed and r.scores["progress"] == {"A": 3, "B": 8} and r.winner == "B"


@pytest.mark.parametrize("text,err", [
    ("", "empty"),
    ("I prefer B overall.", "no JSON"),
    ('{"scores": {"correctness": {"A": 3, "B": 8}, "grou', "truncated"),
    ('{"scores": {"correctness": {"A": 3, "B": 11}}}', "out of range"),
    ('{"scores": {"correctness": {"A": 3, "B": 8}}}', "missing"),
    ('{"scores": {"correctness": {"A": "3", "B": 8}, "grounding": {"A": 1, "B": 1}}}', "not an integer"),
    ('<think>{"scores": {}} is what I would write', "no JSON"),
    ('I would say A.', "no JSON"),
])
def test_unparseable_replies(text, err):
    r = parse_judge_reply(text)
    assert not r.parsed and err in r.error


def test_buckets():
    b = BucketConfig()
    assert [bucket_for(s, b) for s in (100, 80, 79.9, 66, 65.9, 0, None)] == \
        ["final", "final", "refined", "refined", "defeat", "defeat", None]


def test_each_gate_condition_flips_the_verdict_alone():
    cfg = GateConfig(min_margin=5.0, resamples=1000, confidence=0.95, min_parsed_fraction=0.8)
    base = [70.0] * 30 + [60.0] * 10
    assert gate(base, cfg).verdict == "ACCEPT"
    # 1) margin: the same scores against a higher minimum
    g = gate(base, GateConfig(min_margin=25.0, resamples=1000))
    assert g.verdict == "REJECT" and len(g.reasons) == 1 and "mean margin" in g.reasons[0] and g.lower_bound > 0
    # 2) lower bound: mean margin 10 >= 5, parsed fraction 1, but too few and too spread to be sure
    g = gate([100.0, 100.0, 100.0, 0.0, 0.0], cfg)
    assert g.mean_margin == 10 and g.verdict == "REJECT" and len(g.reasons) == 1 and "lower bound" in g.reasons[0]
    # 3) parsed fraction: the base scores plus unparsed turns
    g = gate(base + [None] * 20, cfg)
    assert g.verdict == "REJECT" and len(g.reasons) == 1 and "parsed fraction" in g.reasons[0]


def test_bootstrap_with_many_distinct_scores_bins_them_and_keeps_mean_and_spread():
    rng = np.random.default_rng(4)
    v = np.round(rng.uniform(0, 100, size=300_000), 3)  # ~100k distinct values
    assert np.unique(v).size > 256 and v.size * 2000 > 20_000_000  # the binned path
    means = bootstrap_means(v, 2000, seed=2)
    se = v.std() / np.sqrt(v.size)
    assert means.std() == pytest.approx(se, rel=0.1)
    assert means.mean() == pytest.approx(v.mean(), abs=3 * se)
    exact = bootstrap_means(v[:2000], 2000, seed=2)  # few draws: exact index resampling
    assert exact.std() == pytest.approx(v[:2000].std() / np.sqrt(2000), rel=0.1)


def test_bootstrap_matches_the_standard_error_and_both_paths_agree():
    rng = np.random.default_rng(3)
    v = rng.choice([0.0, 50.0, 100.0], size=5000)
    fast = bootstrap_means(v, 4000, seed=1)
    slow = bootstrap_means(v, 4000, seed=1, max_levels=0)  # index resampling
    se = v.std() / np.sqrt(v.size)
    assert fast.std() == pytest.approx(se, rel=0.1) and slow.std() == pytest.approx(se, rel=0.1)
    assert fast.mean() == pytest.approx(v.mean(), abs=3 * se)
