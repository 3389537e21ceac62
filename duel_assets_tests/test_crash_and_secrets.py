"""kill -9 mid-partition then re-run; failure threshold; a canary key never written anywhere."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from duel_assets_tests.conftest import CANARY_KEY, TEST_CHAIN, VOLATILE, materialize, materialize_report, query

EXE = Path(sys.executable).parent / "duel-assets"


def run_env(tmp: Path, srv, name: str) -> dict:
    home = tmp / name
    (home / "dagster_home").mkdir(parents=True)
    cfg = tmp / f"{name}.toml"
    cfg.write_text(TEST_CHAIN.replace("concurrency = 8", "concurrency = 2"))
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
    env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), DUEL_CONFIG=str(cfg),
               LLM_BASE_URL=srv.base_url, LLM_API_KEY=CANARY_KEY, DUEL_PROGRESS="0")
    return env


def table_snapshot(home: Path) -> dict:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        out = {}
        for (t,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema='duel' ORDER BY 1").fetchall():
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema='duel' AND table_name=? ORDER BY ordinal_position", [t]).fetchall()
                if c not in VOLATILE]
            sel = ", ".join(f"replace(CAST(\"{c}\" AS VARCHAR), '{home}', '<home>')" if c == "path" else f'"{c}"' for c in cols)
            out[t] = sorted(map(repr, con.execute(f"SELECT {sel} FROM duel.{t}").fetchall()))
        return out
    finally:
        con.close()


def cached_keys(home: Path) -> set[str]:
    con = sqlite3.connect(str(home / "cache" / "llm_calls.sqlite"))
    try:
        return {k for (k,) in con.execute("SELECT key FROM calls")}
    finally:
        con.close()


@pytest.mark.reliability
@pytest.mark.parametrize("stage", ["king", "judging"])
def test_kill_9_mid_partition_then_rerun_repeats_no_completed_call(fresh_standin, tmp_path, stage):
    srv = fresh_standin
    srv.state.latency_ms = 250
    key = "prompts_12_000"
    env = run_env(tmp_path, srv, "crashed")
    proc = subprocess.Popen([str(EXE), "run", "--partition", key, "--sample-new"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    cache = Path(env["DUEL_HOME"]) / "cache" / "llm_calls.sqlite"

    def progressed() -> bool:
        if not cache.exists():
            return False
        con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
        try:
            roles = dict(con.execute("SELECT role, count(*) FROM calls GROUP BY role").fetchall())
        except sqlite3.OperationalError:
            return False
        finally:
            con.close()
        return roles.get("king", 0) >= 2 if stage == "king" else roles.get("judge", 0) >= 2

    deadline = time.monotonic() + 120
    while not progressed():
        assert proc.poll() is None, "run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    home = Path(env["DUEL_HOME"])
    done_before = cached_keys(home)
    assert done_before, "nothing completed before the kill"
    n_log = len(srv.state.log)
    rerun = subprocess.run([str(EXE), "run", "--partition", key, "--sample-new"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resent = {e["call_key"] for e in srv.state.log[n_log:]}
    assert not (resent & done_before), "a completed call was paid for twice"
    # every call of the partition was made exactly once in total (no fault injection here)
    completed = [e["call_key"] for e in srv.state.log if e.get("status") == 200]
    assert len(completed) - len(set(completed)) <= 2  # at most the calls in flight at the kill (never cached)
    srv.state.latency_ms = 0
    ref_env = run_env(tmp_path, srv, "uninterrupted")
    ref = subprocess.run([str(EXE), "run", "--partition", key, "--sample-new"], env=ref_env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert table_snapshot(home) == table_snapshot(Path(ref_env["DUEL_HOME"]))


@pytest.mark.e2e
def test_too_many_failures_fail_the_step_with_a_clear_message(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace('model = "standin-generator"', 'model = "standin-always-500"')
                   .replace("retry_budget = 4", "retry_budget = 2"))
    res = materialize(instance, "p", raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    assert "king_answers: 6/6 calls failed" in msg and "challenger_answers: 6/6 calls failed" in msg
    assert "max_failure_rate" in msg
    # the judges had nothing to compare: judge_scores fails too, with the reason, and writes no rows
    assert "judge_scores: not written because its answers failed" in msg
    from duel_assets_tests.conftest import query
    assert query(duel_env["home"], "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_scores'") == [(0,)]


def _all_text_cells(home: Path) -> str:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        parts = []
        for t, c in con.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='duel'").fetchall():
            parts += [str(v) for (v,) in con.execute(f'SELECT "{c}" FROM duel.{t}').fetchall()]
        return "\n".join(parts)
    finally:
        con.close()


@pytest.mark.e2e
def test_canary_key_is_never_written(duel_env, instance, capfd, caplog):
    home = duel_env["home"]
    duel_env["standin"].state.fault_rate = 0.2  # a faulty run: retries, timeouts and garbage on the way
    cfg = duel_env["config"]
    # require_gate off and every bucket exported: the shards are written whatever the verdicts, and searched below
    cfg.write_text(cfg.read_text().replace("timeout_s = 5", "timeout_s = 1")
                   + '\n[export]\nrequire_gate = false\nbuckets = ["final", "refined", "defeat"]\n')
    materialize(instance, "prompts_12_000")
    duel_env["standin"].state.fault_rate = 0.0
    materialize_report(instance)
    assert (home / "report" / "report.md").exists() and any((home / "export").rglob("*.parquet"))
    # a provider that echoes the key in its error text, recorded on every row
    cfg.write_text(cfg.read_text().replace('model = "standin-generator"', 'model = "standin-auth-echo"')
                   .replace("timeout_s = 1", "timeout_s = 1\nmax_failure_rate = 1.0"))
    res = materialize(instance, "prompts_12_001", raise_on_error=False)
    errs = query(home, "SELECT error FROM duel.king_answers WHERE prompt_file='prompts_12_001'")
    assert errs and all("Incorrect API key provided: Bearer ***" in e for (e,) in errs)
    captured = capfd.readouterr()
    places = {"stdout": captured.out, "stderr": captured.err, "log records": caplog.text,
              "table cells": _all_text_cells(home)}
    for root in (home, Path(os.environ["DAGSTER_HOME"])):
        for f in root.rglob("*"):
            if f.is_file():
                places[str(f)] = f.read_bytes().decode("latin-1")
    for name, text in places.items():
        assert CANARY_KEY not in text, f"API key found in {name}"
    for ev in res.all_events:
        assert CANARY_KEY not in str(ev), "API key in a Dagster event"
    assert len(places) > 10  # the instance's storage and logs really were searched


@pytest.mark.e2e
def test_judging_alone_with_no_answers_fails_with_the_reason(duel_env, instance):
    res = materialize(instance, "p", selection=["sampled_turns", "pr_records", "judge_scores"], raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    assert "partition 'p' has no turn with both answers" in msg and "materialize king_answers and challenger_answers first" in msg
    from duel_assets_tests.conftest import query
    assert query(duel_env["home"], "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_scores'") == [(0,)]
    assert duel_env["standin"].state.stats()["requests"] == 0
