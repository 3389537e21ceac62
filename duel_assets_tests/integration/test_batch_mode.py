"""calls.mode = "batch": the provider's files + batches API through the openai package, against the
stand-in's batch API over HTTP (delay, errored and expired requests, the budget, the bench's figures)."""
import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import standin_post

PRICES = {"standin-generator": {"prompt": 1.0, "completion": 2.0, "batch_prompt": 0.5, "batch_completion": 1.0}}


def _caller(srv, path, **cfg):
    calls = CallsConfig(**{"mode": "batch", "batch_poll_s": 0.05, "timeout_s": 2.0, "retry_budget": 4, **cfg})
    return LLMCaller(Endpoint(srv.base_url, "", "LLM"), calls, CallStore(path), prices=PRICES)


def _reqs(n: int) -> list[CallRequest]:
    return [CallRequest("king", "standin-generator", [{"role": "user", "content": f"task {i}: list the files"}],
                        {"max_tokens": 50}) for i in range(n)]


def test_errored_and_expired_requests_are_asked_again_and_every_body_is_paid_once(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/batches", {"delay_s": 0.2, "error_rate": 0.1, "expire_rate": 0.05})
    try:
        for retry in ("online", "batch"):
            results, stats = _caller(fresh_standin, tmp_path / f"{retry}.sqlite", batch_retry=retry).run(_reqs(80))
            assert all(r.ok for r in results) and stats.completed == 80
            s = fresh_standin.state.stats()
            assert s["batch_errors"] > 0 and s["batch_expired"] > 0  # both happened, and were absorbed
            assert s["repeats"] == 0 and s["answers"] == s["distinct_bodies_answered"] == 80
            online = s["requests"]  # chat requests sent one by one: the errored and expired ones, when online
            assert (online > 0) == (retry == "online") and s["batches_created"] >= (1 if retry == "online" else 2)
            store = CallStore(tmp_path / f"{retry}.sqlite")
            batch_rows = [r for _, r in store.items() if r.get("batch")]
            assert len(batch_rows) == s["batch_answers"] and store.count() == 80
            standin_post(fresh_standin, "/_standin/reset", {})
            standin_post(fresh_standin, "/_standin/batches", {"delay_s": 0.2, "error_rate": 0.1, "expire_rate": 0.05})
    finally:
        standin_post(fresh_standin, "/_standin/batches", {"delay_s": 0.0, "error_rate": 0.0, "expire_rate": 0.0})


def test_the_budget_holds_batches_back_and_a_raised_cap_submits_only_the_rest(fresh_standin, tmp_path):
    from duel_assets.lib.calls.budget import BudgetReached, Pricing

    standin_post(fresh_standin, "/_standin/batches", {"delay_s": 0.05, "error_rate": 0.0, "expire_rate": 0.0})
    reqs = _reqs(40)
    worst = [Pricing(PRICES).worst(r) for r in reqs]
    cap = sum(worst) / 4  # a quarter of the requests fit at their worst case, in the first batch
    with pytest.raises(BudgetReached):
        _caller(fresh_standin, tmp_path / "s.sqlite", max_usd=cap).run(reqs)
    store = CallStore(tmp_path / "s.sqlite")
    s = fresh_standin.state.stats()
    assert 0 < store.spent() <= cap and 0 < store.count() < 40 and s["batch_answers"] == store.count()
    results, _ = _caller(fresh_standin, tmp_path / "s.sqlite", max_usd=cap * 100).run(reqs)
    assert all(r.ok for r in results)
    s = fresh_standin.state.stats()
    assert s["repeats"] == 0 and s["batch_requests"] == s["answers"] == 40


def test_a_second_run_finds_every_result_stored(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/batches", {"delay_s": 0.1, "error_rate": 0.0, "expire_rate": 0.0})
    _caller(fresh_standin, tmp_path / "s.sqlite").run(_reqs(10))
    results, stats = _caller(fresh_standin, tmp_path / "s.sqlite").run(_reqs(10))
    assert all(r.ok and r.cached for r in results) and stats.cache_hits == 10
    assert fresh_standin.state.stats()["batches_created"] == 1


def test_the_panel_bench_gives_the_cost_per_accepted_turn_online_and_through_the_batch_api(tmp_path):
    from duel_assets.bench.llm import bench_panel

    r = bench_panel(tmp_path, turns_n=30)
    assert r["batches_created"] >= 2  # the answers, then the judges' waves
    assert r["batch_buckets_identical"] and r["batch_accepted_turns"] == r["accepted_turns"] > 0
    online, batch = r["cost_per_accepted_turn_online"], r["cost_per_accepted_turn_batch"]
    assert online == r["cost_per_accepted_turn"] and 0 < batch < online
    assert r["batch_vs_online_cost"] == pytest.approx(batch / online, abs=1e-3)
