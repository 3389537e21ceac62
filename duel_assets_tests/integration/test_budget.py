"""calls.max_usd: the deployment's hard budget, counted in the call store, against the stand-in over HTTP."""
import os
import subprocess
import sys
import textwrap

import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.calls.budget import BudgetReached, Pricing
from duel_assets.lib.settings import CallsConfig, ConfigError, Endpoint, parse_config

PRICES = {"standin-generator": {"prompt": 3.0, "completion": 15.0}}


def caller(srv, store_path, max_usd=None):
    calls = CallsConfig(timeout_s=2.0, backoff_base_s=0.01, backoff_max_s=0.2, retry_budget=3, concurrency=4,
                        max_usd=max_usd)
    return LLMCaller(Endpoint(srv.base_url, "", "LLM"), calls, CallStore(store_path), prices=PRICES)


def requests(n: int, tag: str = "t") -> list[CallRequest]:
    return [CallRequest("king", "standin-generator",
                        [{"role": "system", "content": "rules " * 50}, {"role": "user", "content": f"{tag} task {i} " * 40}],
                        {"temperature": 0.0, "max_tokens": 200}) for i in range(n)]


def worst_total(reqs) -> float:
    pricing = Pricing(PRICES)
    return sum(pricing.worst(r) for r in reqs)


def test_a_budget_stops_new_requests_keeps_what_was_paid_and_a_raised_cap_pays_only_the_rest(fresh_standin, tmp_path):
    reqs = requests(30)
    cap = worst_total(reqs) / 8  # the replies cost well under their worst case
    with pytest.raises(BudgetReached) as hit:
        caller(fresh_standin, tmp_path / "calls.sqlite", max_usd=cap).run(reqs)
    line = str(hit.value)
    assert line.startswith("budget reached: $") and f"of ${cap:.4f}" in line and "raise calls.max_usd to go on" in line
    store = CallStore(tmp_path / "calls.sqlite")
    paid, stored = store.spent(), store.count()
    stats = fresh_standin.state.stats()
    assert 0 < paid <= cap
    assert 0 < stored < len(reqs) and stats["answers"] == stored  # every answer bought is kept
    assert store.in_flight() == 0
    # the paid figure is the usage of the stored calls at [prices]
    assert paid == pytest.approx(sum(Pricing(PRICES).paid("standin-generator", r) for _, r in store.items()))

    results, _ = caller(fresh_standin, tmp_path / "calls.sqlite", max_usd=cap * 10).run(reqs)
    assert all(r.ok for r in results)
    stats = fresh_standin.state.stats()
    assert stats["repeats"] == 0 and stats["answers"] == len(reqs)  # the rest, and only the rest


def test_a_request_that_fits_once_others_land_waits_for_them_rather_than_failing(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 100
    reqs = requests(6)
    # room for three worst cases at a time: replies cost about a third of theirs, so all six fit in the end
    cap = max(Pricing(PRICES).worst(r) for r in reqs) * 3.5
    results, _ = caller(fresh_standin, tmp_path / "calls.sqlite", max_usd=cap).run(reqs)
    assert all(r.ok for r in results)
    assert fresh_standin.state.stats()["max_in_flight"] <= 3
    assert CallStore(tmp_path / "calls.sqlite").spent() <= cap


def test_calls_stored_before_the_budget_count_towards_it(fresh_standin, tmp_path):
    first = requests(5, "before")
    caller(fresh_standin, tmp_path / "calls.sqlite").run(first)  # no budget: nothing counted yet
    store = CallStore(tmp_path / "calls.sqlite")
    expected = sum(Pricing(PRICES).paid("standin-generator", r) for _, r in store.items())
    assert expected > 0
    with pytest.raises(BudgetReached) as hit:  # the paid calls alone fill a cap of that size
        caller(fresh_standin, tmp_path / "calls.sqlite", max_usd=expected * 1.01).run(requests(3, "after"))
    assert store.spent() == pytest.approx(expected)
    assert hit.value.spent == pytest.approx(expected)


CHILD = textwrap.dedent("""
    import sys
    from duel_assets.lib.calls.budget import BudgetReached
    from duel_assets_tests.integration.test_budget import caller, requests

    class Srv:
        base_url = sys.argv[1]

    try:
        caller(Srv, sys.argv[2], max_usd=float(sys.argv[3])).run(requests(25, sys.argv[4]))
    except BudgetReached as e:
        print(e)
        sys.exit(1)
""")


def test_two_processes_share_the_cap_and_stop_together(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 30
    store_path = tmp_path / "calls.sqlite"
    cap = worst_total(requests(25, "a") + requests(25, "b")) / 8
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def both(cap_now: float) -> list[subprocess.CompletedProcess]:
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, fresh_standin.base_url, str(store_path), str(cap_now), tag],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in "ab"]
        return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate(timeout=10)) for p in procs]

    out = both(cap)
    assert [p.returncode for p in out] == [1, 1], [p.stderr[-500:] for p in out]
    assert all(p.stdout.startswith("budget reached: $") for p in out)
    store = CallStore(store_path)
    assert 0 < store.spent() <= cap
    assert fresh_standin.state.stats()["answers"] == store.count()
    out = both(cap * 100)
    assert [p.returncode for p in out] == [0, 0], [p.stderr[-500:] for p in out]
    stats = fresh_standin.state.stats()
    assert stats["repeats"] == 0 and stats["answers"] == 50 == store.count()


def test_a_budget_without_the_prices_of_every_model_called_is_refused_up_front():
    with pytest.raises(ConfigError) as e:
        parse_config({"calls": {"max_usd": 5.0}, "judges": {"models": ["j1", "j2"]},
                      "prices": {"j1": {"prompt": 1.0, "completion": 2.0}}})
    lines = e.value.errors
    assert len(lines) == 1 and lines[0].startswith("calls.max_usd: got 5 but [prices] has no entry for")
    assert '"gpt-4o-mini"' in lines[0] and '"j2"' in lines[0] and '"j1"' not in lines[0]
    cfg = parse_config({"calls": {"max_usd": 5.0}, "generation": {"model": "g"}, "judges": {"models": ["j1"]},
                        "prices": {"g": {"prompt": 1.0, "completion": 2.0}, "j1": {"prompt": 1.0, "completion": 2.0}}})
    assert cfg.calls.max_usd == 5.0

