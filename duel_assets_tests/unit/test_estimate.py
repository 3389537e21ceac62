"""`duel-assets estimate`: what a run would cost before it runs, against what it then paid (stand-in over HTTP)."""
import json

import pytest

from duel_assets.lib.calls import CallRequest
from duel_assets.lib.calls.estimate import Estimate, Observed, PrefixCache, prompt_tokens

PRICES = {"m": {"prompt": 1.0, "completion": 4.0, "cached_prompt": 0.5, "batch_prompt": 0.5, "batch_completion": 2.0}}


def req(*texts: str, role: str = "judge", max_tokens: int = 100) -> CallRequest:
    return CallRequest(role, "m", [{"role": "user", "content": t} for t in texts], {"max_tokens": max_tokens})


def test_a_prefix_seen_before_is_cached_whole_messages_at_a_time():
    cache = PrefixCache()
    shared = "s" * 400
    assert cache.cached(req(shared, "a" * 40)) == 0
    first = len(json.dumps({"content": shared, "role": "user"}))
    assert cache.cached(req(shared, "b" * 40)) == first // 4  # the shared first message, not the second
    assert cache.cached(CallRequest("judge", "other", [{"role": "user", "content": shared}], {})) == 0  # per model


def test_completion_tokens_are_the_observed_mean_else_max_tokens():
    obs = Observed.from_rows([("m", "judge", {"completion_tokens": 10}), ("m", "judge", {"completion_tokens": 30}),
                              ("m", "king", {"completion_tokens": 100})])
    assert obs.completion(req("x")) == (20.0, "observed")
    assert obs.completion(req("x", role="challenger")) == (pytest.approx(140 / 3), "observed (model)")
    assert Observed().completion(req("x", max_tokens=77)) == (77.0, "max_tokens")


def test_stored_calls_are_free_and_skipped_shares_are_left_out():
    est = Estimate(PRICES, Observed.from_rows([("m", "judge", {"completion_tokens": 50})]))
    a, b = req("a" * 4000), req("b" * 4000)
    est.add(a, {"prompt_tokens": 1000, "completion_tokens": 40, "cached_tokens": 0})
    est.add(b, None, skip_share=0.5)
    (row,) = est.rows()
    assert row["calls"] == 2 and row["stored"] == 1 and row["to_pay"] == 0.5 and row["expected_skipped"] == 0.5
    p = prompt_tokens(b)
    assert row["online_usd"] == pytest.approx(0.5 * (p * 1.0 + 50 * 4.0) / 1e6)
    assert row["batch_usd"] == pytest.approx(0.5 * (p * 0.5 + 50 * 2.0) / 1e6)
    assert row["stored_paid_usd"] == pytest.approx((1000 * 1.0 + 40 * 4.0) / 1e6)
    no_batch = Estimate({"m": {"prompt": 1.0, "completion": 1.0}}, Observed())
    no_batch.add(a)
    assert no_batch.totals()["batch_usd"] is None and no_batch.totals()["online_usd"] > 0

