"""Each distinct request is paid for once per deployment, counted at the endpoint (the stand-in
counts answers to a body it had already answered: ``repeats``)."""
import json
import subprocess
import sys
import time

from duel_assets_tests.conftest import standin_post


def test_four_processes_asking_for_the_same_bodies_buy_each_once(fresh_standin, tmp_path):
    """Four processes with the same 30 requests, one call store: each body is sent by one of them,
    the others wait for its reply."""
    fresh_standin.state.latency_ms = 150
    procs = [subprocess.Popen([sys.executable, "-m", "duel_assets.bench.worker", fresh_standin.base_url,
                               str(tmp_path / "calls.sqlite"), "30", "same", "8"], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(o["ok"] == 30 for o in outs)
    stats = fresh_standin.state.stats()
    assert stats["answers"] == 30 and stats["repeats"] == 0 and stats["max_in_flight"] <= 8, stats


def test_a_reply_slower_than_the_timeout_is_streamed_stored_and_paid_once(fresh_standin, tmp_path):
    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    fresh_standin.state.latency_ms = 1500  # 1.5 x timeout_s: the reply streams in over 1.5 s
    req = CallRequest("king", "standin-generator", [{"role": "user", "content": "slow one"}], {"temperature": 0})
    cfg = CallsConfig(timeout_s=1.0, retry_budget=3, backoff_base_s=0.01)
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
    t0 = time.monotonic()
    (r,), stats = caller.run([req])
    assert r.ok and time.monotonic() - t0 >= 1.4
    assert stats.calls_made == 1 and stats.possibly_billed_retries == 0
    assert fresh_standin.state.stats()["answers"] == 1 and caller.cache.get(req.key) is not None


def test_without_streaming_a_slow_reply_is_read_on_not_bought_again(fresh_standin, tmp_path):
    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    fresh_standin.state.latency_ms = 700
    req = CallRequest("king", "standin-generator", [{"role": "user", "content": "slow, whole"}], {"temperature": 0})
    cfg = CallsConfig(timeout_s=0.5, retry_budget=3, backoff_base_s=0.01, stream=False)
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
    (r,), stats = caller.run([req])
    # the reply took longer than timeout_s: the same request was read to its end, not sent again
    assert r.ok and r.attempts == 1 and stats.possibly_billed_retries == 0 and stats.slow_replies == 1
    time.sleep(0.3)
    assert fresh_standin.state.stats()["answers"] == 1


def test_two_runs_at_once_never_exceed_the_deployment_bound(fresh_standin, tmp_path):
    """Two callers (as two runs would be) sharing one store: at most ``concurrency`` requests in
    flight at the endpoint together."""
    import threading

    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    fresh_standin.state.latency_ms = 100
    cfg = CallsConfig(concurrency=8, timeout_s=5)
    results = {}

    def run(name):
        caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
        reqs = [CallRequest("king", "standin-generator", [{"role": "user", "content": f"{name} {i}"}], {}) for i in range(40)]
        results[name] = caller.run(reqs)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(s.completed == 40 for _, s in results.values())
    stats = fresh_standin.state.stats()
    assert stats["max_in_flight"] <= 8 and stats["answers"] == 80, stats
    assert stats["max_in_flight"] >= 6  # and the bound was used, not starved


def test_a_body_in_flight_in_one_caller_is_not_sent_by_another(fresh_standin, tmp_path):
    import threading

    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    fresh_standin.state.latency_ms = 300
    cfg = CallsConfig(concurrency=4, timeout_s=5)
    same = [CallRequest("judge", "standin-judge-1", [{"role": "user", "content": f"same {i}"}], {}) for i in range(6)]
    out = []

    def run():
        caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
        out.append(caller.run(same))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and all(r.ok for results, _ in out for r in results)
    assert fresh_standin.state.stats()["answers"] == 6  # three callers, six bodies, each bought once
    assert sum(s.completed_elsewhere for _, s in out) >= 6
    standin_post(fresh_standin, "/_standin/reset", {})
