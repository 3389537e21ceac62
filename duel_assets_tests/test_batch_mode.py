"""calls.mode = "batch": the provider's files + batches API through the openai package, against the
stand-in's batch API over HTTP (delay, errored and expired requests, a run killed while a batch is in flight)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duel_assets.lib.calls import CallStore
from duel_assets.lib.llm import CallRequest, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import materialize, metadata, query, standin_post
from duel_assets_tests.test_estimate import _prompt_files

EXE = Path(sys.executable).parent / "duel-assets"
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


BATCH_CHAIN = """
[prices."standin-generator"]
prompt = 0.15
completion = 0.60
batch_prompt = 0.075
batch_completion = 0.30

[prices."standin-judge-1"]
prompt = 0.60
completion = 2.50
batch_prompt = 0.30
batch_completion = 1.25
"""


def _batch_mode(cfg: Path, poll_s: float) -> None:
    cfg.write_text(cfg.read_text().replace("[calls]", f'[calls]\nmode = "batch"\nbatch_poll_s = {poll_s}') + BATCH_CHAIN)


@pytest.mark.e2e
def test_a_partition_completes_in_batch_mode_with_errored_and_expired_requests(duel_env, instance):
    home, srv = duel_env["home"], duel_env["standin"]
    _batch_mode(duel_env["config"], 0.05)
    standin_post(srv, "/_standin/batches", {"delay_s": 0.2, "error_rate": 0.1, "expire_rate": 0.05})
    try:
        _prompt_files(home, ["p"], 12)
        res = materialize(instance, "p")
        assert res.success
        s = srv.state.stats()
        assert s["batches_created"] >= 2  # the answers, then the judges
        assert s["batch_errors"] + s["batch_expired"] > 0
        assert s["repeats"] == 0 and s["answers"] == s["distinct_bodies_answered"]
        (judged,) = query(home, "SELECT count(*) FROM duel.judge_scores WHERE parsed")[0]
        assert judged == 24  # 12 turns, one judge, both orders
        assert metadata(res, "king_answers")["llm_failures"] == 0
    finally:
        standin_post(srv, "/_standin/batches", {"delay_s": 0.0, "error_rate": 0.0, "expire_rate": 0.0})


@pytest.mark.e2e
def test_a_run_killed_while_its_batch_is_in_flight_is_resumed_on_the_same_batch(duel_env):
    home, srv = duel_env["home"], duel_env["standin"]
    _batch_mode(duel_env["config"], 0.2)
    standin_post(srv, "/_standin/batches", {"delay_s": 6.0, "error_rate": 0.0, "expire_rate": 0.0})
    _prompt_files(home, ["p"], 6)
    env = {**os.environ, "DUEL_PROGRESS": "0"}
    cmd = [str(EXE), "run", "--partition", "p", "--parallel", "1", "--no-report"]
    try:
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while srv.state.stats()["batches_created"] < 1 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert srv.state.stats()["batches_created"] == 1, "the first run never submitted its batch"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        (batch_id,) = srv.state.batch.batches  # the one the stand-in created
        store = CallStore(home / "cache" / "llm_calls.sqlite")
        # recorded, or killed between the endpoint creating it and the store recording it (then the
        # submission is found on the endpoint by its input file and taken over)
        ((recorded, status),) = store.batches_of()
        assert (recorded, status) == (batch_id, "in_progress") or status == "submitting"
        assert store.count() == 0
        standin_post(srv, "/_standin/batches", {"delay_s": 0.5})  # the judges' batches need not wait as long
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        s = srv.state.stats()
        ids = [b for b, _ in store.batches_of()]
        assert ids[0] == batch_id and len(ids) == s["batches_created"]  # the answers' batch resumed, not submitted again
        assert s["repeats"] == 0 and s["batch_requests"] == s["distinct_bodies_answered"] == s["answers"]
    finally:
        standin_post(srv, "/_standin/batches", {"delay_s": 0.0, "error_rate": 0.0, "expire_rate": 0.0})


def test_the_panel_bench_gives_the_cost_per_accepted_turn_online_and_through_the_batch_api(tmp_path):
    from duel_assets.bench.llm import bench_panel

    r = bench_panel(tmp_path, turns_n=30)
    assert r["batches_created"] >= 2  # the answers, then the judges' waves
    assert r["batch_buckets_identical"] and r["batch_accepted_turns"] == r["accepted_turns"] > 0
    online, batch = r["cost_per_accepted_turn_online"], r["cost_per_accepted_turn_batch"]
    assert online == r["cost_per_accepted_turn"] and 0 < batch < online
    assert r["batch_vs_online_cost"] == pytest.approx(batch / online, abs=1e-3)
