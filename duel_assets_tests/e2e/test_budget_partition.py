"""calls.max_usd on a whole partition: the duel step fails with the budget line, a raised cap completes it."""
import json

import pytest

from duel_assets.lib.calls import CallStore
from duel_assets.lib.calls.budget import Pricing

BUDGETED = """
[prices."standin-generator"]
prompt = 0.15
completion = 0.60

[prices."standin-judge-1"]
prompt = 0.60
completion = 2.50
"""


def test_the_duel_step_fails_with_the_budget_line_and_a_raised_cap_completes_it_paying_each_body_once(duel_env, instance):
    from duel_assets_tests.conftest import materialize
    from duel_assets_tests.e2e.test_estimate_partition import _prompt_files

    home, srv, cfg = duel_env["home"], duel_env["standin"], duel_env["config"]
    base = cfg.read_text() + BUDGETED
    cfg.write_text(base.replace("[calls]", "[calls]\nmax_usd = 0.002"))
    _prompt_files(home, ["p"], 6)
    res = materialize(instance, "p", raise_on_error=False)
    assert not res.success
    (failure,) = [e for e in res.all_events if e.is_step_failure]
    assert failure.step_key == "duel_calls"
    message = failure.step_failure_data.error.message
    assert "budget reached: $" in message and "of $0.0020; completed calls are kept; raise calls.max_usd to go on" in message
    store = CallStore(home / "cache" / "llm_calls.sqlite")
    assert 0 < store.spent() <= 0.002 and srv.state.stats()["answers"] == store.count()
    cfg.write_text(base.replace("[calls]", "[calls]\nmax_usd = 1.0"))
    assert materialize(instance, "p").success
    stats = srv.state.stats()
    assert stats["repeats"] == 0 and stats["answers"] == store.count()
    prices = {"standin-generator": {"prompt": 0.15, "completion": 0.60}, "standin-judge-1": {"prompt": 0.60, "completion": 2.50}}
    paid = sum(Pricing(prices).paid(m, json.loads(r)) for m, _, r in store.recent_calls(10_000))
    assert store.spent() == pytest.approx(paid)  # every stored call counted once, across both runs
