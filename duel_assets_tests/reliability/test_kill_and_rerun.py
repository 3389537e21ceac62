"""kill -9 of a run mid-king and mid-judging, then a re-run that repeats no completed call."""
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from duel_assets_tests.conftest import CANARY_KEY, EXE, TEST_CHAIN, VOLATILE


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
