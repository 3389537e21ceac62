"""Whole partitions against endpoints with a real server's quirks: switches refused, streams
without usage, streams cut by a concurrent request. Each partition completes with real answers;
what was learnt is counted in the step's metadata and kept for the next process. Against an
endpoint that never replies whole (a 200 HTML page, a stream closed mid-way or ended without
[DONE]) the partition fails, every call counted under its kind, and nothing is stored."""
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.lib.calls import CallStore
from duel_assets.lib.settings import endpoint_id
from duel_assets_tests.conftest import FIXTURES as FIX
from duel_assets_tests.conftest import materialize, metadata, query, standin_post

ROLES = ("king_answers", "challenger_answers", "judge_scores")
CODERFORGE = f"""
[[sources]]
format = "coderforge"
path = "{FIX / 'coderforge_sample.jsonl'}"

[pr_records]
path = "{FIX / 'tool_pr_records.jsonl'}"
"""


def _downgrades(res) -> dict:
    """llm_downgrades summed over the three call assets."""
    out: dict = {}
    for asset in ROLES:
        for k, v in metadata(res, asset)["llm_downgrades"].items():
            out[k] = out.get(k, 0) + v
    return out


def _answers_ok(home) -> None:
    for t in ("king_answers", "challenger_answers"):
        (n, failed, empty), = query(home, f"SELECT count(*), count(error_kind), count(*) FILTER (WHERE coalesce(content, '') = '' "
                                          f"AND tool_calls IS NULL) FROM duel.{t}")
        assert n == 6 and failed == 0 and empty == 0, t
    (parsed,), = query(home, "SELECT count(*) FILTER (WHERE parsed) FROM duel.judge_scores")
    assert parsed > 0


@pytest.mark.parametrize("mode,switch,extra,models", [
    ("refuse-stream", "stream", "", 2),  # the generation model and the judge, each learnt once
    ("refuse-stream-options", "stream_options", "", 2),
    # tool-calling turns answered without their tools come back as text: every king is malformed, so
    # no judge is asked (the partition completes, its turns excluded as king_malformed)
    ("refuse-tools", "tools", CODERFORGE, 1),
])
def test_a_partition_completes_against_an_endpoint_that_refuses_a_switch(duel_env, instance, mode, switch, extra, models):
    cfg, home, srv = duel_env["config"], duel_env["home"], duel_env["standin"]
    cfg.write_text(cfg.read_text() + extra)
    standin_post(srv, "/_standin/modes", {"modes": [mode]})
    res = materialize(instance, "p")
    assert res.success
    if switch == "tools":
        assert query(home, "SELECT DISTINCT format_reason, excluded_reason FROM duel.king_answers") == [("no_action", "king_malformed")]
    else:
        _answers_ok(home)
    assert _downgrades(res) == {switch: models}
    learnt = CallStore(home / "cache" / "llm_calls.sqlite").downgrades(endpoint_id(srv.base_url))
    assert learnt.by_model == {m: {switch: "off"} for m in ("standin-generator", "standin-judge-1")[:models]}
    refusals = [e for e in srv.state.log if e.get("refused")]
    assert 1 <= len(refusals) <= models * 8  # the first wave of each model at most (concurrency 8)


def test_a_second_process_starts_downgraded(duel_env, instance):
    srv = duel_env["standin"]
    standin_post(srv, "/_standin/modes", {"modes": ["refuse-stream"]})
    assert materialize(instance, "p").success
    n = len(srv.state.log)
    env = {**os.environ, "DUEL_PROGRESS": "0"}
    out = subprocess.run([str(Path(sys.executable).parent / "duel-assets"), "run", "--partition", "q", "--sample-new"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    later = srv.state.log[n:]
    assert later and not [e for e in later if e.get("refused")] and not [e for e in later if e["stream"]]
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as inst:
        run = next(r for r in inst.get_runs() if r.tags.get("dagster/partition") == "q")
        mats = [e.asset_materialization for e in inst.all_logs(run.run_id) if e.asset_materialization is not None]
    king = next({k: v.value for k, v in m.metadata.items()} for m in mats if m.asset_key.to_user_string() == "king_answers")
    assert king["llm_downgrades"] == {} and king["llm_downgrades_in_effect"] == {"standin-generator": {"stream": "off"}}


def test_a_partition_without_usage_records_estimated_flagged_tokens(duel_env, instance):
    cfg, home = duel_env["config"], duel_env["home"]
    cfg.write_text(cfg.read_text() + '\n[prices."standin-generator"]\nprompt = 1.0\ncompletion = 2.0\n')
    standin_post(duel_env["standin"], "/_standin/modes", {"modes": ["stream-no-usage"]})
    res = materialize(instance, "p")
    _answers_ok(home)
    for t in ("king_answers", "challenger_answers"):
        rows = query(home, f"SELECT usage_estimated, prompt_tokens, completion_tokens, usage FROM duel.{t}")
        assert rows and all(est and p > 0 and c > 0 and usage is None for est, p, c, usage in rows), rows[:2]
    assert query(home, "SELECT count(*) FROM duel.judge_scores WHERE NOT usage_estimated OR prompt_tokens = 0") == [(0,)]
    md = metadata(res, "king_answers")
    assert md["llm_usage_missing"] == 6 and md["llm_prompt_tokens"] > 0 and md["estimated_cost_usd"] > 0


def test_a_partition_completes_against_an_endpoint_that_cuts_concurrent_streams(duel_env, instance):
    """A llama.cpp server interrupts a stream when another request arrives: role chunk, then
    [DONE], no text, no finish_reason. Nothing of that is stored; the concurrency comes down."""
    cfg, home, srv = duel_env["config"], duel_env["home"], duel_env["standin"]
    cfg.write_text(cfg.read_text().replace("retry_budget = 4", "retry_budget = 6"))
    srv.state.latency_ms, srv.state.stream_chunk_s = 150, 0.03
    standin_post(srv, "/_standin/modes", {"modes": ["cut-concurrent"]})
    res = materialize(instance, "p")
    _answers_ok(home)
    assert _downgrades(res) == {"concurrency": 1}
    assert sum(metadata(res, a)["llm_broken_streams"] for a in ROLES) == srv.state.stats()["cut_streams"] >= 1
    store = CallStore(home / "cache" / "llm_calls.sqlite")
    assert store.downgrades(endpoint_id(srv.base_url)).concurrency == 1
    calls = store.items()  # every stored call is a whole reply: none of the cut ones
    assert calls and all(r["finish_reason"] and (r["content"] or r["tool_calls"]) for _, r in calls)


@pytest.mark.parametrize("mode,kind", [("html", "garbage"), ("close-mid-stream", "broken_stream"),
                                       ("cut-without-done", "broken_stream")])
def test_a_partition_against_an_endpoint_that_never_replies_whole_fails_counted_and_stores_nothing(duel_env, instance, mode, kind):
    standin_post(duel_env["standin"], "/_standin/modes", {"modes": [mode]})
    res = materialize(instance, "p", raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    for asset in ("king_answers", "challenger_answers"):  # every call failed, each counted under its kind
        assert f"{asset}: 6/6 calls failed" in msg and f"by kind {{'{kind}': 6}}" in msg, msg
    assert CallStore(duel_env["home"] / "cache" / "llm_calls.sqlite").count() == 0  # nothing stored
