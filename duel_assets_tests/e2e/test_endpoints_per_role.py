"""Endpoints per role: ``[endpoints.<name>]`` tables and ``[roles]``. A partition whose king calls
one stand-in and whose challenger and judge call another (rate-limited, with its own concurrency
and extra headers): each call reaches its role's endpoint, each endpoint's requests in flight stay
within its own bound, and ``duel-assets config`` lists both with the roles that use them."""
import os
import subprocess
import sys

from duel_assets.cli.estimate import estimate
from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.calls import CallStore
from duel_assets.lib.settings import Paths, endpoint_id
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
        # a second run buys nothing from either, and the estimate finds every call stored at its endpoint
        before = (first.state.stats()["requests"], slow.state.stats()["requests"])
        assert materialize(instance, "p").success
        assert (first.state.stats()["requests"], slow.state.stats()["requests"]) == before
        est = estimate(["p"], Paths.from_env())
        assert est["total"]["calls"] == est["total"]["stored"] > 0 and est["total"]["to_pay"] == 0
        assert est["endpoint"] == f"{endpoint_id(first.base_url)}, {endpoint_id(slow.base_url)}"


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
