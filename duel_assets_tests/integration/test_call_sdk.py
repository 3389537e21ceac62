"""Every request goes through the openai SDK: its User-Agent and X-Stainless-* headers reach the
endpoint, the key as a bearer token (or nothing without one), none of the SDK's own environment."""
import openai

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import CANARY_KEY


def caller(srv, tmp_path, key: str = CANARY_KEY, **cfg) -> LLMCaller:
    calls = CallsConfig(**{"timeout_s": 5, "retry_budget": 1, **cfg})
    return LLMCaller(Endpoint(srv.base_url, key, "LLM"), calls, CallStore(tmp_path / "calls.sqlite"))


def reqs(n: int, tag: str = "") -> list[CallRequest]:
    return [CallRequest("king", "standin-generator", [{"role": "user", "content": f"list the files {tag} {i}"}],
                        {"max_tokens": 64}) for i in range(n)]


def test_every_request_goes_through_the_openai_sdk(fresh_standin, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-of-another-account")  # the SDK's own: never sent to the endpoint
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-another-account")
    _, stats = caller(fresh_standin, tmp_path).run(reqs(2))
    _, whole = caller(fresh_standin, tmp_path / "whole", stream=False).run(reqs(1, "whole"))
    assert stats.completed == 2 and whole.completed == 1
    log = fresh_standin.state.log
    assert len(log) == 3 and [e["stream"] for e in log].count(False) == 1
    for e in log:
        assert e["user_agent"] == f"AsyncOpenAI/Python {openai.__version__}", e["user_agent"]
        assert {"x-stainless-lang", "x-stainless-package-version", "x-stainless-retry-count",
                "x-stainless-read-timeout", "authorization"} <= set(e["headers"]), e["headers"]
        assert not {"openai-organization", "openai-project"} & set(e["headers"])


def test_without_a_key_no_authorization_is_sent(fresh_standin, tmp_path):
    (r,), _ = caller(fresh_standin, tmp_path, key="").run(reqs(1, "no key"))
    assert r.ok
    entry, = fresh_standin.state.log
    assert "authorization" not in entry["headers"] and entry["user_agent"].startswith("AsyncOpenAI/Python")
