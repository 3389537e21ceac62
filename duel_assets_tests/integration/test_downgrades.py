"""Switches an endpoint refuses: read from its refusal, asked again without them, remembered per
endpoint and model in the call store, so another process starts downgraded."""
import json
import subprocess
import sys

import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.calls.downgrades import apply, further, identity_key, is_refusal, lowered_concurrency, named_switches
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import standin_post

TOOLS = [{"type": "function", "function": {"name": "bash", "description": "run a command",
                                           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]
SCHEMA = {"type": "object", "properties": {"winner": {"type": "string"}}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}}
# llama-cpp-python 0.3.36's answer to a json_schema response format, as measured
LLAMA_500 = json.dumps({"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
                                             "'response_format', 'type'), 'msg': \"Input should be 'text' or "
                                             "'json_object'\", 'input': 'json_schema'}", "type": "internal_server_error",
                                  "param": None, "code": None}})


def test_a_refusal_names_the_switch_in_each_servers_own_way():
    openai_stream = json.dumps({"error": {"message": "Unsupported value: 'stream' does not support true with this model.",
                                          "param": "stream", "code": "unsupported_value"}})
    assert named_switches(openai_stream) == ["stream"] and is_refusal(400, openai_stream)
    assert named_switches(LLAMA_500) == ["response_format"] and is_refusal(500, LLAMA_500)
    fastapi = json.dumps({"detail": [{"loc": ["body", "tools"], "msg": "Extra inputs are not permitted"}]})
    assert named_switches(fastapi) == ["tools"] and is_refusal(422, fastapi)
    words = json.dumps({"error": {"message": "Unrecognized request argument supplied: stream_options"}})
    assert named_switches(words) == ["stream_options"]
    assert named_switches('{"error": {"message": "include_usage is not supported"}}') == ["stream_options"]
    vllm = json.dumps({"object": "error", "message": '"auto" tool choice requires --enable-auto-tool-choice and '
                       "--tool-call-parser to be set", "type": "BadRequestError", "param": None, "code": 400})
    assert named_switches(vllm) == ["tool_choice"] and is_refusal(400, vllm)
    assert named_switches('{"error": {"message": "upstream timed out; streaming is fine"}}') == []
    assert not is_refusal(500, '{"error": {"message": "internal error: stream crashed"}}')  # a crash, not a refusal
    assert not is_refusal(401, openai_stream) and not is_refusal(429, openai_stream)


def test_each_switch_steps_down_and_only_the_content_shaping_ones_change_a_calls_identity():
    body = {"model": "m", "messages": [], "response_format": JSON_SCHEMA, "tools": TOOLS, "tool_choice": "none",
            "seed": 3, "stream": True, "stream_options": {"include_usage": True}}
    one = dict(body)
    assert apply(one, {"response_format": "json_object"}) == ["response_format=json_object"]
    assert one["response_format"] == {"type": "json_object", "schema": SCHEMA}
    two = dict(body)
    assert apply(two, {"stream": "off"}) == [] and "stream" not in two and "stream_options" not in two
    assert identity_key("k", apply(dict(body), {"stream_options": "off"})) == "k"  # transport only: the same call
    three = dict(body)
    changed = apply(three, {"tools": "off", "seed": "off", "response_format": "off"})
    assert sorted(changed) == ["response_format=off", "seed=off", "tool_choice=off", "tools=off"]
    assert not {"tools", "tool_choice", "seed", "response_format"} & set(three)
    assert identity_key("k", changed) != "k" and identity_key("k", changed) == identity_key("k", sorted(changed))
    assert apply(dict(body), {"tools": "off"}) != apply(dict(body), {"tool_choice": "off"})
    # a store only ever moves a switch further down
    assert further("response_format", None, "json_object") and further("response_format", "json_object", "off")
    assert not further("response_format", "off", "json_object") and not further("stream", "off", "off")
    assert further("concurrency", "4", "2") and not further("concurrency", "2", "4")
    assert lowered_concurrency(8, 8) == 4 and lowered_concurrency(8, 1) is None and lowered_concurrency(2, 3) == 1
    assert lowered_concurrency(1, 2) is None


def caller(srv, tmp_path, log=None, **cfg) -> LLMCaller:
    calls = CallsConfig(**{"timeout_s": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "retry_budget": 3,
                           "concurrency": 4, **cfg})
    return LLMCaller(Endpoint(srv.base_url, "k", "LLM"), calls, CallStore(tmp_path / "calls.sqlite"), log=log)


def requests(n: int, tag: str = "", model: str = "standin-generator") -> list[CallRequest]:
    """Requests with every switch: a tool, a JSON schema, a seed (re-samples), streamed by default."""
    return [CallRequest("king", model, [{"role": "user", "content": f"list the files {tag} {i}"}],
                        {"max_tokens": 64, "response_format": JSON_SCHEMA, "tool_choice": "auto"}, tools=TOOLS,
                        sample_index=1 + i) for i in range(n)]


def refused(srv) -> list[dict]:
    return [e for e in srv.state.log if e.get("refused")]


SECOND_PROCESS = """
import json, sys
from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint
base, store, tag = sys.argv[1:4]
tools = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]
rf = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {"type": "object"}}}
reqs = [CallRequest("king", "standin-generator", [{"role": "user", "content": f"list {tag} {i}"}],
                    {"max_tokens": 64, "response_format": rf, "tool_choice": "auto"}, tools=tools, sample_index=1 + i)
        for i in range(3)]
results, stats = LLMCaller(Endpoint(base, "k", "LLM"), CallsConfig(timeout_s=5, retry_budget=2), CallStore(store)).run(reqs)
print(json.dumps({"ok": sum(r.ok for r in results), "downgrades": dict(stats.downgrades),
                  "in_effect": stats.downgrades_in_effect}))
"""


@pytest.mark.parametrize("mode,switch,value", [
    ("refuse-stream", "stream", "off"),
    ("refuse-stream-options", "stream_options", "off"),
    ("refuse-json-schema", "response_format", "json_object"),
    ("refuse-response-format", "response_format", "off"),  # json_schema, then json_object + schema, refused
    ("refuse-tools", "tools", "off"),
    ("refuse-tool-choice", "tool_choice", "off"),
    ("refuse-seed", "seed", "off"),
])
def test_a_refused_switch_is_learnt_once_and_a_second_process_starts_without_it(fresh_standin, tmp_path, mode, switch, value):
    standin_post(fresh_standin, "/_standin/modes", {"modes": [mode]})
    lines: list[str] = []
    c = caller(fresh_standin, tmp_path, log=lines.append)
    results, stats = c.run(requests(6, "first"))
    assert all(r.ok and (r.content or r.tool_calls) for r in results), [r.error for r in results]
    assert stats.downgrades == {switch: 1} and stats.failures == {} and stats.retries == 0
    assert stats.downgrades_in_effect == {"standin-generator": {switch: value}}
    assert c.store.downgrades(c.endpoint_id).of("standin-generator") == {switch: value}
    assert sum(f"refused {switch} for standin-generator" in line for line in lines) == 1, lines
    assert 1 <= len(refused(fresh_standin)) <= 4 + (switch == "response_format")  # the first wave at most, never again
    n = len(fresh_standin.state.log)
    # another process on the same call store sends none of it
    out = subprocess.run([sys.executable, "-c", SECOND_PROCESS, fresh_standin.base_url, str(tmp_path / "calls.sqlite"),
                          "second"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert second == {"ok": 3, "downgrades": {}, "in_effect": {"standin-generator": {switch: value}}}
    assert not [e for e in fresh_standin.state.log[n:] if e.get("refused")]


def test_a_downgraded_call_has_its_own_identity_when_the_switch_shapes_the_reply(fresh_standin, tmp_path):
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["refuse-tools"]})
    c = caller(fresh_standin, tmp_path)
    req = requests(1, "identity")[0]
    (r,), _ = c.run([req])
    assert r.ok and r.key != c.cache.key(req.key) and c.cache.get(req) is not None
    (again,), stats = c.run([req])  # the same request, now known to go without tools: served from the store
    assert again.cached and stats.calls_made == 0
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["refuse-stream"]})
    other = caller(fresh_standin, tmp_path / "other")
    plain = CallRequest("king", "standin-judge-1", [{"role": "user", "content": "a plain one"}], {"max_tokens": 16})
    (s,), _ = other.run([plain])
    assert s.ok and s.key == other.cache.key(plain.key)  # whole instead of streamed: the same call


def test_a_refusal_that_names_a_switch_by_chance_teaches_nothing_and_never_loops(fresh_standin, tmp_path):
    c = caller(fresh_standin, tmp_path)
    req = CallRequest("king", "standin-refuses-naming-seed", [{"role": "user", "content": "x"}], {}, sample_index=2)
    (r,), stats = c.run([req])
    assert not r.ok and r.error_kind == "http_400" and "whatever its seed" in r.error
    assert r.attempts == 2 and stats.calls_made == 2  # once with the seed, once without: then it stops
    assert stats.downgrades == {} and c.store.downgrades(c.endpoint_id).by_model == {}
    assert not c.cache.downgrades.of("standin-refuses-naming-seed")


def test_the_calls_listing_shows_what_an_endpoint_refused_and_removing_the_endpoint_forgets_it(
        fresh_standin, tmp_path, monkeypatch, capsys):
    from duel_assets.cli import main

    path = tmp_path / "home" / "cache" / "llm_calls.sqlite"
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["refuse-stream"]})
    c = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), CallsConfig(timeout_s=5), CallStore(path))
    assert all(r.ok for r in c.run(requests(2, "listed"))[0])
    monkeypatch.setenv("DUEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUEL_CALL_CACHE", raising=False)
    assert main(["calls"]) == 0
    out = capsys.readouterr().out
    assert f"{c.endpoint_id} standin-generator: stream = off since " in out and "Unsupported value: 'stream'" in out
    assert main(["calls", "--remove-endpoint", fresh_standin.base_url]) == 0
    assert CallStore(path).downgrades(c.endpoint_id).by_model == {}
    capsys.readouterr()
    assert main(["calls"]) == 0 and "refused by the endpoint" not in capsys.readouterr().out


def test_a_call_asked_again_under_its_downgraded_identity_is_merged_with_the_same_request_that_follows(
        fresh_standin, tmp_path, monkeypatch):
    """The first call learns that tools are refused and goes on as the call without them; the same
    request asked meanwhile is that call too: it waits for its reply instead of sending it again."""
    import asyncio
    import threading
    import time

    from duel_assets.devtools.standin.server import Handler
    from duel_assets.lib.calls import CallStats

    # the stand-in holds every reply it would give (not the refusal) until the test lets it go: the
    # same request is asked while the call without tools is in flight, however loaded the machine is
    let_go = threading.Event()
    monkeypatch.setattr(Handler, "_hold", staticmethod(lambda since, latency: let_go.wait(60)))
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["refuse-tools"]})
    c = caller(fresh_standin, tmp_path)
    req = requests(1, "merged")[0]

    async def until(done, what: str) -> None:
        """Looks at every turn of the event loop (bounded: 60 s), so it sees a state the moment it arises."""
        deadline = time.monotonic() + 60
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within 60 s: {what}")
            await asyncio.sleep(0)

    async def go():
        async with c.session("merge") as call:
            stats = CallStats()
            first = asyncio.ensure_future(call(req, stats))
            try:
                await until(lambda: c.cache.downgrades.of(req.model), "the refusal of tools learnt")
                second = asyncio.ensure_future(call(req, stats))
                await until(lambda: stats.merged or second.done(), "the second request merged or answered")
            finally:
                let_go.set()
            return await first, await second, stats

    a, b, stats = c.run_coroutine(go())
    assert a.ok and b.ok and a.key == b.key
    assert b.cached and not a.cached and stats.merged == 1  # the second waited for the first, not the other way
    assert fresh_standin.state.stats()["answers"] == 1


def test_a_500_validation_error_about_no_switch_fails_the_call_at_once(fresh_standin, tmp_path):
    req = CallRequest("king", "standin-refuses-validation", [{"role": "user", "content": "x"}], {})
    (r,), stats = caller(fresh_standin, tmp_path).run([req])
    assert not r.ok and r.error_kind == "http_500" and r.attempts == 1 and stats.retries == 0
    assert "Input should be 'system', 'user' or 'assistant'" in r.error
