"""The call layer against the stand-in over real HTTP: retries, budget, quirks, cache, secrets."""
import time

import pytest

from duel_assets.lib.calls import CallRequest, CallStore, Garbage, LLMCaller, classify, parse_reply
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import CANARY_KEY, standin_post


def caller(srv, tmp_path, **cfg):
    calls = CallsConfig(**{"timeout_s": 1.0, "backoff_base_s": 0.01, "backoff_max_s": 0.5, "retry_budget": 4, **cfg})
    return LLMCaller(Endpoint(srv.base_url, CANARY_KEY, "LLM"), calls, CallStore(tmp_path / "calls.sqlite"))


def req(text="list the files in src/app.py", model="standin-generator", **kw):
    return CallRequest("king", model, [{"role": "system", "content": "rules"}, {"role": "user", "content": text}],
                       {"temperature": 0.0}, **kw)


def statuses(srv):
    return [e.get("status") for e in srv.state.log]


def test_429_with_retry_after_then_success(fresh_standin, tmp_path):
    fresh_standin.state.retry_after_s = 0.6
    standin_post(fresh_standin, "/_standin/script", {"faults": ["429"]})
    t0 = time.monotonic()
    (r,), stats = caller(fresh_standin, tmp_path).run([req()])
    waited = time.monotonic() - t0
    fresh_standin.state.retry_after_s = 0.05
    assert r.ok and r.attempts == 2 and "```bash" in r.content
    assert statuses(fresh_standin) == [429, 200]
    assert waited >= 0.6  # honoured Retry-After rather than the 0.01 s backoff
    assert stats.retries == 1 and stats.retry_kinds == {"rate_limit": 1}


def test_500_then_success(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/script", {"faults": ["500", "500"]})
    (r,), stats = caller(fresh_standin, tmp_path).run([req()])
    assert r.ok and r.attempts == 3 and statuses(fresh_standin) == [500, 500, 200]
    assert stats.retry_kinds == {"server_error": 2}


def test_timeout_then_success(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/script", {"faults": ["timeout"]})
    (r,), stats = caller(fresh_standin, tmp_path, timeout_s=0.5).run([req()])
    assert r.ok and r.attempts == 2 and stats.retry_kinds == {"timeout": 1}


def test_garbage_body_is_retried(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/script", {"faults": ["garbage"]})
    (r,), stats = caller(fresh_standin, tmp_path).run([req()])
    assert r.ok and stats.retry_kinds == {"garbage": 1}


def test_failure_past_budget_is_recorded_and_the_rest_land(fresh_standin, tmp_path):
    reqs = [req(f"task {i}") for i in range(4)] + [req("doomed", model="standin-always-500")]
    results, stats = caller(fresh_standin, tmp_path, retry_budget=3).run(reqs)
    assert [r.ok for r in results] == [True, True, True, True, False]
    bad = results[-1]
    assert bad.error_kind == "server_error" and bad.attempts == 3 and "500" in bad.error
    assert stats.failures == {"server_error": 1} and stats.completed == 4 and stats.calls_made == 7
    assert stats.retries == 2
    # failures are not cached: a re-run sends only the failed call again
    results2, stats2 = caller(fresh_standin, tmp_path, retry_budget=1).run(reqs)
    assert stats2.cache_hits == 4 and stats2.calls_made == 1 and not results2[-1].ok


def test_non_retryable_status_fails_at_once_and_the_key_is_scrubbed(fresh_standin, tmp_path):
    (r,), stats = caller(fresh_standin, tmp_path).run([req(model="standin-auth-echo")])
    assert not r.ok and r.error_kind == "http_401" and r.attempts == 1
    assert CANARY_KEY not in r.error and "***" in r.error


@pytest.mark.parametrize("model,check", [
    ("standin-quirk-think", lambda r: r.reasoning == "private chain of thought" and "<think>" not in r.content),
    ("standin-quirk-reasoning", lambda r: r.reasoning == "separate reasoning field" and "```bash" in r.content),
    ("standin-quirk-empty", lambda r: r.content == ""),
    # no usage from the endpoint: estimated from the text, and flagged so
    ("standin-quirk-nousage", lambda r: r.usage_missing and r.usage_estimated and r.prompt_tokens == req().prompt_estimate > 0
     and r.completion_tokens == -(-len(r.content) // 4)),
    ("standin-quirk-length", lambda r: r.finish_reason == "length"),
])
def test_provider_quirks(fresh_standin, tmp_path, model, check):
    (r,), stats = caller(fresh_standin, tmp_path).run([req(model=model)])
    assert r.ok and check(r)


def test_quirks_flow_into_format_ok(fresh_standin, tmp_path):
    from duel_assets.lib.duel.answers import Planned, answer_row
    from duel_assets.lib.turn import Turn

    models = ["standin-quirk-control", "standin-quirk-empty", "standin-quirk-multi", "standin-quirk-length",
              "standin-quirk-think", "standin-generator"]
    turns = [Turn(f"t{i}", "i", None, "swe_zero", "tr", i, "bash_block", [{"role": "user", "content": "x"}], {}) for i in range(6)]
    planned = [Planned(t, req(model=m)) for t, m in zip(turns, models)]
    results, stats = caller(fresh_standin, tmp_path).run([p.request for p in planned])
    rows = [answer_row("king", p, r) for p, r in zip(planned, results)]
    assert [(r["format_ok"], r["format_reason"]) for r in rows] == [
        (False, "control_tokens"), (False, "empty_reply"), (False, "multiple_actions"), (False, "no_action"),
        (True, None), (True, None)]
    assert rows[3]["finish_reason"] == "length"
    assert rows[4]["reasoning"] == "private chain of thought"
    assert stats.empty_content == 1 and stats.length_finishes == 1


def test_cache_hit_sends_nothing_and_keys_include_role_and_sample(fresh_standin, tmp_path):
    c = caller(fresh_standin, tmp_path)
    base = req()
    c.run([base])
    n = len(fresh_standin.state.log)
    (r,), stats = c.run([req()])
    assert r.cached and stats.cache_hits == 1 and len(fresh_standin.state.log) == n
    other_role = CallRequest("challenger", base.model, base.messages, base.params)
    other_sample = CallRequest("king", base.model, base.messages, base.params, sample_index=1)
    assert len({base.key, other_role.key, other_sample.key}) == 3
    # the call's identity (content and endpoint) is sent as X-Duel-Call-Key
    assert fresh_standin.state.log[-1]["call_key"] == c.cache.key(base.key) != base.key


def test_concurrency_bound_is_respected(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 100
    reqs = [req(f"job {i}") for i in range(12)]
    t0 = time.monotonic()
    _, stats = caller(fresh_standin, tmp_path, concurrency=4).run(reqs)
    wall = time.monotonic() - t0
    assert stats.completed == 12
    assert wall >= 0.3  # 12 calls / 4 slots x 100 ms; unbounded would be ~0.1 s
    times = sorted(e["t"] for e in fresh_standin.state.log)
    # never more than 4 requests within one latency window
    assert max(sum(1 for u in times if t <= u < t + 0.09) for t in times) <= 4


def test_connections_are_kept_alive_one_per_call_in_flight(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 20
    _, stats = caller(fresh_standin, tmp_path, concurrency=6).run([req(f"job {i}") for i in range(60)])
    assert stats.completed == 60
    # 60 calls through 6 slots: the 6 connections opened for the first wave carry all the rest
    assert fresh_standin.state.connections <= 6


def test_refused_connection_is_classified_retried_and_recorded(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls = CallsConfig(timeout_s=1.0, backoff_base_s=0.01, backoff_max_s=0.02, retry_budget=3)
    c = LLMCaller(Endpoint(f"http://127.0.0.1:{port}/v1", CANARY_KEY, "LLM"), calls, CallStore(tmp_path / "c.sqlite"))
    (r,), stats = c.run([req()])
    assert not r.ok and r.error_kind == "connection" and r.attempts == 3
    assert stats.retry_kinds == {"connection": 2} and stats.failures == {"connection": 1}
    assert CANARY_KEY not in (r.error or "")


def _reply(message: dict, **extra) -> dict:
    return {"id": "x", "model": "m", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], **extra}


def test_parse_reply_keeps_provider_fields_apart():
    out = parse_reply(_reply({"role": "assistant", "content": "<think>plan</think>THOUGHT: go",
                              "reasoning_content": "separate"}, usage={"prompt_tokens": 7, "completion_tokens": 3}))
    assert out["content"] == "THOUGHT: go" and out["reasoning"] == "separate\n\nplan"
    assert (out["prompt_tokens"], out["completion_tokens"], out["usage_missing"]) == (7, 3, False)
    parts = parse_reply(_reply({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}))
    assert parts["content"] == "ab" and parts["usage_missing"] is True
    tools = parse_reply(_reply({"role": "assistant", "content": None,
                                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}]}))
    assert tools["content"] == "" and tools["tool_calls"][0]["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}


@pytest.mark.parametrize("data", [[], {"choices": []}, {"choices": [{"message": "text"}]}, "<html>",
                                  {"choices": [{"message": {"content": "x", "tool_calls": "ls"}}]}])
def test_parse_reply_calls_malformed_replies_garbage(data):
    with pytest.raises(Garbage):
        parse_reply(data)
    assert classify(Garbage("x"))[0] == "garbage"


def test_statuses_and_transport_errors_are_classified_by_what_happened():
    """Statuses come from the endpoint's answer, with its own delay where it gives one; transport
    errors say whether the connection broke or went silent."""
    import asyncio

    import aiohttp
    from multidict import CIMultiDict

    from duel_assets.lib.calls.errors import StatusError

    def status(code: int, **headers: str) -> StatusError:
        return StatusError(code, CIMultiDict(headers), '{"error": {"message": "no"}}')

    assert classify(status(429, **{"retry-after-ms": "250"})) == ("rate_limit", 0.25)
    assert classify(status(429, **{"Retry-After": "3"})) == ("rate_limit", 3.0)
    assert classify(status(503, **{"Retry-After": "1"})) == ("server_error", 1.0)
    assert classify(status(408)) == ("server_error", None)
    assert classify(status(401)) == ("http_401", None)
    assert "HTTP 401" in str(status(401))
    assert classify(aiohttp.ServerTimeoutError("read"))[0] == "timeout"
    assert classify(asyncio.TimeoutError())[0] == "timeout"
    assert classify(aiohttp.ServerDisconnectedError())[0] == "connection"
    assert classify(aiohttp.ClientPayloadError("cut"))[0] == "connection"
    assert classify(ConnectionResetError())[0] == "connection"
    assert classify(ValueError("bug"))[0] == "client_error"
