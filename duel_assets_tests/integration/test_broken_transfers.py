"""Replies that never arrive whole: an HTML page, a stream cut before its finish_reason (with or
without [DONE]), a connection closed mid-stream, streams cut by a concurrent request, a stream
without usage. Each is classified and counted, retried, and never stored as an answer."""
import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import CANARY_KEY, standin_post


def caller(srv, tmp_path, **cfg) -> LLMCaller:
    calls = CallsConfig(**{"timeout_s": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "retry_budget": 3,
                           "concurrency": 4, **cfg})
    return LLMCaller(Endpoint(srv.base_url, CANARY_KEY, "LLM"), calls, CallStore(tmp_path / "calls.sqlite"))


def reqs(n: int, tag: str = "") -> list[CallRequest]:
    return [CallRequest("king", "standin-generator", [{"role": "user", "content": f"list the files {tag} {i}"}],
                        {"max_tokens": 64}) for i in range(n)]


@pytest.mark.parametrize("mode,kind,said", [
    ("html", "garbage", "a 200 reply that is not JSON (text/html)"),
    ("close-mid-stream", "broken_stream", "connection closed mid-stream"),
    ("cut-without-done", "broken_stream", "stream ended without a finish_reason (without [DONE]"),
    ("cut-with-done", "broken_stream", "stream ended without a finish_reason (after [DONE]"),
])
def test_a_reply_that_never_arrives_whole_is_a_counted_classified_failure_never_stored(fresh_standin, tmp_path, mode, kind, said):
    standin_post(fresh_standin, "/_standin/modes", {"modes": [mode]})
    c = caller(fresh_standin, tmp_path)
    results, stats = c.run(reqs(3, mode))
    assert [r.error_kind for r in results] == [kind] * 3 and all(said in r.error for r in results), results[0].error
    assert stats.failures == {kind: 3} and said in stats.first_errors[kind]
    assert stats.retry_kinds == {kind: 6} and stats.possibly_billed_retries == 6 and stats.completed == 0
    assert all(r.content is None and r.attempts == 3 for r in results)
    assert c.store.count() == 0  # nothing stored: the next run asks again
    assert stats.broken_streams == (9 if kind == "broken_stream" else 0)
    assert c.store.downgrades(c.endpoint_id).by_model == {}  # every stream cut, alone or not: not a crowd's fault


@pytest.mark.parametrize("fault", ["cut", "cut-nodone", "close"])
def test_one_cut_stream_is_retried_and_the_reply_that_follows_is_stored(fresh_standin, tmp_path, fault):
    standin_post(fresh_standin, "/_standin/script", {"faults": [fault]})
    c = caller(fresh_standin, tmp_path)
    (r,), stats = c.run(reqs(1, fault))
    assert r.ok and r.attempts == 2 and "```bash" in r.content and r.finish_reason == "stop"
    assert stats.retry_kinds == {"broken_stream": 1} and stats.broken_streams == 1 and c.store.count() == 1
    assert fresh_standin.state.stats()["answers"] == 1  # the cut one was never billed


def test_a_stream_without_usage_gets_estimated_flagged_usage_kept_in_the_store(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["stream-no-usage"]})
    c = caller(fresh_standin, tmp_path)
    req = reqs(1, "usage")[0]
    (r,), stats = c.run([req])
    assert r.ok and r.usage_missing and r.usage_estimated
    assert r.prompt_tokens == req.prompt_estimate > 0 and r.completion_tokens == -(-len(r.content) // 4)
    assert stats.usage_missing == 1 and stats.prompt_tokens == r.prompt_tokens
    (again,), _ = c.run([req])
    assert again.cached and again.usage_estimated and again.prompt_tokens == r.prompt_tokens
    standin_post(fresh_standin, "/_standin/modes", {"modes": []})
    (whole,), _ = caller(fresh_standin, tmp_path / "w").run(reqs(1, "with usage"))
    assert not whole.usage_estimated and not whole.usage_missing


def test_an_endpoint_that_cuts_concurrent_streams_gets_a_lower_concurrency_and_keeps_it(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 300
    fresh_standin.state.stream_chunk_s = 0.05
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["cut-concurrent"]})
    lines: list[str] = []
    c = caller(fresh_standin, tmp_path, retry_budget=6)
    c.log = lines.append
    results, stats = c.run(reqs(6, "crowd"))
    assert all(r.ok and r.content for r in results) and stats.failures == {}
    assert stats.downgrades == {"concurrency": 1} and stats.broken_streams >= 1
    assert stats.downgrades_in_effect["*"] == {"concurrency": "1"}
    assert c.store.downgrades(c.endpoint_id).concurrency == 1
    assert sum("cut streams while others were in flight" in line for line in lines) == 1, lines
    # the next caller starts at one request in flight: nothing is cut
    cut = fresh_standin.state.stats()["cut_streams"]
    standin_post(fresh_standin, "/_standin/reset", {})
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["cut-concurrent"]})
    results, stats = caller(fresh_standin, tmp_path, retry_budget=6).run(reqs(4, "again"))
    assert cut >= 1 and all(r.ok for r in results) and stats.broken_streams == 0 and stats.downgrades == {}
    st = fresh_standin.state.stats()
    assert st["max_in_flight"] == 1 and st["cut_streams"] == 0
