"""Endpoints per role: ``[endpoints.<name>]`` tables and ``[roles]``. A partition whose king calls
one stand-in and whose challenger and judge call another (rate-limited, with its own concurrency
and extra headers): each call reaches its role's endpoint, each endpoint's requests in flight stay
within its own bound, and ``duel-assets config`` lists both with the roles that use them."""
import os
import subprocess
import sys

import pytest

from duel_assets.lib.calls import CallStore
from duel_assets.lib.settings import ConfigError, endpoint_id, endpoints, parse_config
from duel_assets.lib.standin import StandinServer
from duel_assets_tests.conftest import CANARY_KEY, materialize, metadata, query

JUDGE_KEY = "sk-second-endpoint-canary-41d2"


def _routed_chain(url: str) -> str:
    return f"""
[endpoints.slow]
base_url = "{url}"
api_key_env = "SLOW_KEY"
concurrency = 2
headers = {{ "X-Team" = "duel" }}

[roles]
challenger = "slow"
judge = "slow"
"""


def _log(srv) -> list[dict]:
    return [e for e in srv.state.log if e.get("status") != 429]


@pytest.mark.e2e
def test_roles_reach_their_own_endpoints_each_within_its_own_bounds(duel_env, instance, monkeypatch):
    cfg, home, first = duel_env["config"], duel_env["home"], duel_env["standin"]
    first.state.latency_ms = 40.0
    with StandinServer(retry_after_s=0.05, latency_ms=40.0, rpm=240) as slow:  # 4 requests a second
        cfg.write_text(cfg.read_text() + _routed_chain(slow.base_url))
        monkeypatch.setenv("SLOW_KEY", JUDGE_KEY)
        res = materialize(instance, "p")
        assert res.success
        king_keys = {k for (k,) in query(home, "SELECT call_key FROM duel.king_answers WHERE call_key IS NOT NULL")}
        other_keys = {k for (k,) in query(home, "SELECT call_key FROM duel.challenger_answers WHERE call_key IS NOT NULL "
                                                "UNION SELECT call_key FROM duel.judge_scores WHERE call_key IS NOT NULL")}
        assert king_keys and other_keys
        first_keys = {e["call_key"] for e in _log(first)}
        slow_keys = {e["call_key"] for e in _log(slow)}
        assert king_keys <= first_keys and not (king_keys & slow_keys)
        assert other_keys <= slow_keys and not (other_keys & first_keys)
        # the endpoint's extra header goes to it alone
        assert all("x-team" in e["headers"] for e in slow.state.log)
        assert not any("x-team" in e["headers"] for e in first.state.log)
        # each endpoint within its own concurrency: 2 for the slow one, 8 ([calls]) for the first
        slow_stats, first_stats = slow.state.stats(), first.state.stats()
        assert 1 <= slow_stats["max_in_flight"] <= 2
        assert 1 <= first_stats["max_in_flight"] <= 8
        # the rate limit is the slow endpoint's alone: learnt for it in the call store (from its
        # x-ratelimit headers), none for the first; the king never waited on it
        store = CallStore(home / "cache" / "llm_calls.sqlite")
        assert store.budget(endpoint_id(slow.base_url)).learned_rpm == 240
        assert store.budget(endpoint_id(first.base_url)).learned_rpm == 0
        assert first_stats["rate_limited"] == 0 and metadata(res, "king_answers")["llm_rate_limited"] == 0
        # a second run buys nothing from either
        before = (first.state.stats()["requests"], slow.state.stats()["requests"])
        assert materialize(instance, "p").success
        assert (first.state.stats()["requests"], slow.state.stats()["requests"]) == before


def test_config_lists_each_endpoint_with_its_roles_and_no_secret(duel_env):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + _routed_chain("http://127.0.0.1:9/v1"))
    env = {**os.environ, "SLOW_KEY": JUDGE_KEY}
    out = subprocess.run([sys.executable, "-m", "duel_assets.cli", "config"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    row = {ln.split()[0] + (" " + ln.split()[1] if ln.split()[1] in ("key", "roles", "limits", "headers") else ""): ln
           for ln in lines if ln.startswith("  ") and len(ln.split()) > 1}
    assert duel_env["standin"].base_url in row["default"]
    assert "king" in row["default roles"] and "challenger" not in row["default roles"]
    assert "http://127.0.0.1:9/v1" in row["slow"]
    assert "challenger" in row["slow roles"] and "judge standin-judge-1" in row["slow roles"]
    assert "SLOW_KEY (set, " in row["slow key"] and "concurrency 2" in row["slow limits"]
    assert "X-Team: ***" in row["slow headers"]
    for secret in (JUDGE_KEY, CANARY_KEY, "duel\n"):
        assert secret not in out.stdout + out.stderr


def test_endpoint_tables_and_roles_are_checked_with_one_line_each():
    with pytest.raises(ConfigError) as e:
        parse_config({"endpoints": {"a": {}, "b": {"base_url": "http://x/v1", "base_url_env": "B_URL"},
                                    "bad name": {"base_url": "http://x/v1", "headers": {"Authorization": "k"}}},
                      "roles": {"king": "nowhere", "judges": {"not-a-judge": "a"}}})
    lines = e.value.errors
    assert any(ln.startswith("endpoints.a: got neither") for ln in lines)
    assert any(ln.startswith("endpoints.b: got both") for ln in lines)
    assert any("bad name" in ln and "allowed: letters" in ln for ln in lines)
    assert any("headers.Authorization" in ln for ln in lines)
    assert any(ln.startswith("roles.king: got 'nowhere'") for ln in lines)
    assert any(ln.startswith("roles.judges.not-a-judge:") for ln in lines)


def test_routes_and_the_variables_an_endpoint_names():
    cfg = parse_config({"judges": {"models": ["j1", "j2"]},
                        "endpoints": {"far": {"base_url_env": "FAR_URL", "api_key_env": "FAR_KEY", "concurrency": 3}},
                        "roles": {"judges": {"j2": "far"}}})
    assert endpoints.role_routes(cfg) == {"king": "default", "challenger": "default", "judge j1": "default", "judge j2": "far"}
    assert endpoints.used(cfg, judges_only=True) == ["default", "far"]
    assert endpoints.limits(cfg, "far").concurrency == 3 and endpoints.limits(cfg, "default") is cfg.calls
    ep = endpoints.spec_endpoint("far", cfg.endpoints["far"], {"FAR_URL": "http://u:pw@far:81/v1/", "FAR_KEY": "sk-far-key"})
    assert (ep.base_url, ep.api_key, ep.basic_auth) == ("http://far:81/v1", "sk-far-key", ("u", "pw"))
    with pytest.raises(ConfigError, match=r"endpoints\.far\.base_url_env: the variable FAR_URL is unset"):
        endpoints.spec_endpoint("far", cfg.endpoints["far"], {})
    assert not endpoints.is_routed(parse_config({}))
