"""calls.mode = "batch" on whole partitions: errored and expired requests, a run killed while its batch is in flight."""
import os
import signal
import subprocess
import time
from pathlib import Path

from duel_assets.lib.calls import CallStore
from duel_assets_tests.conftest import EXE, materialize, metadata, query, standin_post
from duel_assets_tests.e2e.test_estimate_partition import _prompt_files

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

