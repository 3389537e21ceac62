"""Money per accepted turn: tokens and cost by role, cached prompt tokens at their own price."""
import pandas as pd
import pytest

from duel_assets.lib.verdict.spend import spend


def test_cost_per_accepted_turn_by_role():
    king = pd.DataFrame([{"turn_id": "a", "model": "gen", "prompt_tokens": 1000, "completion_tokens": 100, "cached_tokens": 0},
                         {"turn_id": "b", "model": "gen", "prompt_tokens": 1000, "completion_tokens": 100, "cached_tokens": 800}])
    chal = pd.DataFrame([{"turn_id": "a", "model": "gen", "prompt_tokens": 2000, "completion_tokens": 100, "cached_tokens": 1000},
                         {"turn_id": "b", "model": None, "error_kind": "skipped", "prompt_tokens": None}])
    judge = pd.DataFrame([{"turn_id": "a", "judge": "j", "prompt_tokens": 3000, "completion_tokens": 50, "cached_tokens": 2000}])
    prices = {"gen": {"prompt": 1.0, "completion": 2.0, "cached_prompt": 0.25}, "j": {"prompt": 0.5, "completion": 1.0}}
    out = spend({"king": king, "challenger": chal, "judge": judge}, prices, accepted=2)
    assert out["tokens_by_role"]["king"] == {"prompt": 2000, "completion": 200, "cached_prompt": 800}
    assert out["tokens_by_role"]["challenger"]["prompt"] == 2000  # the skipped row costs nothing
    king_cost = (1200 * 1.0 + 800 * 0.25 + 200 * 2.0) / 1e6
    chal_cost = (1000 * 1.0 + 1000 * 0.25 + 100 * 2.0) / 1e6
    judge_cost = (3000 * 0.5 + 50 * 1.0) / 1e6  # no cached price: cached tokens at the prompt price
    assert out["cost_by_role_usd"] == {"king": pytest.approx(king_cost), "challenger": pytest.approx(chal_cost),
                                       "judge": pytest.approx(judge_cost)}
    assert out["cost_per_accepted_turn_usd"] == pytest.approx((king_cost + chal_cost + judge_cost) / 2, abs=1e-6)
    assert out["tokens_per_accepted_turn"] == round((2200 + 2100 + 3050) / 2)
    none = spend({"king": king}, {}, accepted=0)
    assert none["cost_usd"] is None and none["cost_per_accepted_turn_usd"] is None and none["tokens_per_accepted_turn"] is None
