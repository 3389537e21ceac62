"""A partition against slow, silent and refusing endpoints: it fails within the deadline, pays
each body once, and the refusal reaches the step log, the failure message and the run summary."""
import time

from duel_assets_tests.conftest import materialize
from duel_assets_tests.integration.test_call_deadlines import BlackHole


def test_a_partition_against_a_black_hole_fails_within_the_deadline(duel_env, instance, monkeypatch):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("timeout_s = 5", "timeout_s = 1\ndeadline_s = 4"))
    with BlackHole() as hole:
        monkeypatch.setenv("LLM_BASE_URL", hole.url)
        res = materialize(instance, "p", raise_on_error=False)
    assert not res.success
    times = {}
    for entry in instance.all_logs(res.run_id):
        ev = entry.dagster_event
        if ev is not None and ev.step_key == "duel_calls" and ev.event_type_value in ("STEP_START", "STEP_FAILURE"):
            times[ev.event_type_value] = entry.timestamp
    assert times["STEP_FAILURE"] - times["STEP_START"] < 4 + 3, times
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    assert "king_answers: 6/6 calls failed" in msg and "calls.deadline_s = 4" in msg


def test_a_partition_against_a_slow_whole_endpoint_pays_each_body_once(duel_env, instance):
    srv = duel_env["standin"]
    srv.state.latency_ms = 1500
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("timeout_s = 5", "timeout_s = 1\nstream = false"))
    res = materialize(instance, "prompts_6_000")
    time.sleep(0.2)
    st = srv.state.stats()
    assert st["answers"] > 12 and st["repeats"] == 0 and max(srv.state.answered.values()) == 1, st
    assert st["max_in_flight"] <= 8, st  # calls.concurrency of the test chain
    md = {m.materialization.asset_key.to_user_string(): m.materialization.metadata
          for m in (e.event_specific_data for e in res.get_asset_materialization_events())}
    assert md["king_answers"]["llm_possibly_billed_retries"].value == 0
    assert sum(md[a]["llm_slow_replies"].value for a in ("king_answers", "challenger_answers", "judge_scores")) > 0


def test_refusals_reach_the_step_log_the_failure_message_and_the_run_summary(duel_env, instance):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import dagster as dg

    said = "this model is not served by this deployment (stand-in)"
    cfg = duel_env["config"]
    chain = cfg.read_text()
    # answers refused: the step fails, its message in the provider's words
    cfg.write_text(chain.replace('model = "standin-generator"', 'model = "standin-refuses"'))
    res = materialize(instance, "p", raise_on_error=False)
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    assert f"first http_400: StatusError: HTTP 400: {said}" in failure.event_specific_data.error.message
    # judgements refused but tolerated: the run succeeds, and says so on the terminal and in the step's log
    cfg.write_text(chain.replace('models = ["standin-judge-1"]', 'models = ["standin-refuses"]')
                   .replace("timeout_s = 5", "timeout_s = 5\nmax_failure_rate = 1.0"))
    env = {**os.environ, "DUEL_PROGRESS": "0"}
    out = subprocess.run([str(Path(sys.executable).parent / "duel-assets"), "run", "--partition", "q", "--sample-new"],
                         env=env, capture_output=True, text=True, timeout=300)
    line = next((x for x in out.stderr.splitlines() if x.startswith("[q] judge_scores:")), "")
    assert "calls failed; first http_400: StatusError: HTTP 400: " + said in line, out.stderr[-2000:]
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as inst:
        run = next(r for r in inst.get_runs() if r.tags.get("dagster/partition") == "q")
        logs = [e.user_message for e in inst.all_logs(run.run_id)]
    assert sum("first http_400 from" in m and said in m for m in logs) == 1, logs
