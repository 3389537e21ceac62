"""Real processes against one DUEL_HOME: commands started together on a fresh Dagster instance, a lock
holder stopped with SIGSTOP, waiters ended by SIGTERM, `run` killed with SIGKILL mid-run, then
`forget` and the UI's run queue, the UI's view of a forgotten partition, and `duel-assets ui` stopped
with SIGTERM. (`make test-reliability`)"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.devtools.ports import free_port
from duel_assets.devtools.standin import StandinServer
from duel_assets.devtools.webserver import Webserver
from duel_assets.lib.system import processes
from duel_assets.lib.system.locks import holder
from duel_assets_tests.conftest import EXE, TEST_CHAIN
from duel_assets_tests.e2e.test_command_line import cli, cli_env

REPO = {"repositoryLocationName": "duel_assets", "repositoryName": "__repository__"}
ANSWER_CHECKS = [("king_answers", "format_ok_rate"), ("challenger_answers", "format_ok_rate"),
                 ("challenger_answers", "leak_rate"), ("judge_scores", "parse_rate")]


def _start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(what: str, fn, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value



def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` and a new server could bind it (as servers do, with SO_REUSEADDR:
    the closed connections' TIME_WAIT does not count)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alembic_heads(dagster_home: Path) -> dict[str, int]:
    """Rows of alembic_version in each SQLite storage of the instance (one each, or it is broken)."""
    out = {}
    for db in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        with sqlite3.connect(dagster_home / db) as con:
            out[db] = con.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
    return out


def _assert_instance_works(env: dict, dagster_home: Path, keys: list[str]) -> None:
    assert _alembic_heads(dagster_home) == {"history/runs.db": 1, "history/runs/index.db": 1, "schedules/schedules.db": 1}
    after = cli(env, "sample", "--prompts", "3", "--per-file", "3", "--stem", "after")
    assert after.returncode == 0, after.stderr[-2000:]
    with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
        assert set(keys) | {"after_3_000"} <= set(inst.get_dynamic_partitions("prompt_files"))
        inst.get_runs(limit=5)


# -- concurrent first use -------------------------------------------------------------------------

@pytest.mark.parametrize("trial", range(3))
def test_two_samples_at_once_on_a_fresh_home(tmp_path, trial):
    env = cli_env(tmp_path)
    dh = Path(env["DAGSTER_HOME"])
    assert not dh.exists()
    procs = [_start(env, "sample", "--prompts", "6", "--per-file", "3", "--stem", s) for s in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    _assert_instance_works(env, dh, ["a_6_000", "a_6_001", "b_6_000", "b_6_001"])


def test_two_runs_of_new_partitions_at_once_on_a_fresh_home(tmp_path, fresh_standin):
    env = cli_env(tmp_path, base_url=fresh_standin.base_url)
    env["DUEL_PROGRESS"] = "0"
    dh = Path(env["DAGSTER_HOME"])
    procs = [_start(env, "run", "--partition", k, "--sample-new", "--no-report") for k in ("ka", "kb")]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "materialized 1/1 partitions" in out
    _assert_instance_works(env, dh, ["ka", "kb"])
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        runs = inst.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["ka", "kb"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.tags["duel/pid"].isdigit() and r.tags["duel/host"] == socket.gethostname() for r in runs)


# -- bounded lock waits ---------------------------------------------------------------------------

def _busy(lock: Path) -> bool:
    """Another process holds the flock on ``lock``."""
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _stop_while_holding(env: dict, lock: Path, args: list[str], attempts: int = 8) -> subprocess.Popen:
    """A `duel-assets` process stopped with SIGSTOP while it holds ``lock``: started, watched until the
    lock file names it and the lock is taken, stopped, and checked to still hold it (started again
    with the next attempt when it let go just before)."""
    for i in range(attempts):
        proc = _start(env, *args[:-1], f"{args[-1]}{i}")
        try:
            _wait_for("the lock to be taken", lambda p=proc: p.poll() is not None or (
                lock.exists() and holder(lock).get("pid") == p.pid and _busy(lock)), timeout=120, every=0.002)
        except AssertionError:
            proc.kill()
            raise
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGSTOP)
            if _busy(lock) and holder(lock).get("pid") == proc.pid:
                return proc
            os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=120)
    raise AssertionError(f"no attempt was caught holding {lock}")


def _read_until(proc: subprocess.Popen, text: str, timeout: float) -> str:
    """``proc``'s stderr up to and including the first line holding ``text`` (a bounded wait)."""
    import select

    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} within {timeout} s; stderr: {seen[-3000:]}"
        if select.select([proc.stderr], [], [], min(left, 1.0))[0]:
            chunk = os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
            assert chunk, f"ended (exit {proc.wait()}) before {text!r}; stderr: {seen[-3000:]}"
            seen += chunk
    return seen


def _waits_then_sigterm(env: dict, args: list[str], lock: Path) -> None:
    """A command waiting for ``lock`` (it says so) ends within 5 s of one SIGTERM, exit 130."""
    waiter = subprocess.Popen([str(EXE), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = _read_until(waiter, "waiting up to", timeout=240)
        said = seen[seen.index("waiting up to"):].splitlines()[0]
        assert said.startswith("waiting up to 300 s for lock ") and f"{lock}" in said
        t0 = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=5) == 130
        assert time.monotonic() - t0 < 5
        rest = os.read(waiter.stderr.fileno(), 65536).decode(errors="replace")
        assert "interrupted" in rest and "report:" not in rest, rest[-2000:]
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_a_stopped_sample_holding_the_history_lock(tmp_path):
    env = cli_env(tmp_path, config=TEST_CHAIN + "\n[locks]\ntimeout_s = 4\n")
    long_wait = dict(env, DUEL_CONFIG=str(tmp_path / "long.toml"))
    Path(long_wait["DUEL_CONFIG"]).write_text(TEST_CHAIN + "\n[locks]\ntimeout_s = 300\n")
    home = Path(env["DUEL_HOME"])
    assert cli(env, "sample", "--prompts", "3", "--per-file", "3", "--stem", "warm").returncode == 0  # the instance exists
    lock = home / "history_index.lock"
    stopped = _stop_while_holding(env, lock, ["sample", "--prompts", "3", "--per-file", "3", "--stem", "held"])
    try:
        t0 = time.monotonic()
        second = cli(env, "sample", "--prompts", "3", "--per-file", "3", "--stem", "second", timeout=120)
        elapsed = time.monotonic() - t0
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        error = [ln for ln in lines if ln.startswith("error: ")]
        assert len(error) == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert f"history index: lock {lock} not free after waiting 4 s (locks.timeout_s = 4)" in error[0]
        assert f"held by PID {stopped.pid} (duel-assets sample --prompts 3 --per-file 3 --stem held" in error[0]
        assert " since " in error[0] and elapsed < 4 + 60  # the wait, plus the command's start-up
        _waits_then_sigterm(long_wait, ["sample", "--prompts", "3", "--per-file", "3", "--stem", "third"], lock)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    stopped.communicate(timeout=120)
    assert stopped.returncode == 0


HOLD = """
import sys, time
from duel_assets.lib.system.locks import file_lock
with file_lock(sys.argv[1], 5):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_stopped_holder_of_the_export_lock(tmp_path, fresh_standin):
    env = cli_env(tmp_path, base_url=fresh_standin.base_url, config=TEST_CHAIN + "\n[locks]\ntimeout_s = 4\n")
    env["DUEL_PROGRESS"] = "0"
    long_wait = dict(env, DUEL_CONFIG=str(tmp_path / "long.toml"))
    Path(long_wait["DUEL_CONFIG"]).write_text(TEST_CHAIN + "\n[locks]\ntimeout_s = 300\n")
    first = cli(env, "run", "--partition", "e", "--sample-new")
    assert first.returncode == 0, first.stderr[-3000:]
    lock = Path(env["DUEL_HOME"]) / "report" / ".export.lock"
    holder_proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder_proc.stdout.readline().strip() == "locked"
        os.kill(holder_proc.pid, signal.SIGSTOP)
        again = cli(env, "run", "--partition", "e", timeout=300)
        assert again.returncode == 1
        failed = [ln for ln in again.stderr.splitlines() if ln.startswith("[e] exported_buckets failed: ")]
        assert len(failed) == 1, again.stderr[-3000:]
        assert f"export: lock {lock} not free after waiting 4 s (locks.timeout_s = 4)" in failed[0]
        assert f"held by PID {holder_proc.pid} (-c {lock}) since " in failed[0]
        _waits_then_sigterm(long_wait, ["run", "--partition", "e"], lock)
    finally:
        os.kill(holder_proc.pid, signal.SIGCONT)
        holder_proc.kill()
        holder_proc.wait()


# -- kill -9, forget, the UI ----------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            fields = processes._stat_fields(int(d.name))
            if len(fields) > 2:
                children.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _latest_check_runs(dh: Path) -> dict[tuple[str, str], str | None]:
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        keys = [dg.AssetCheckKey(dg.AssetKey(a), n) for a, n in ANSWER_CHECKS]
        got = inst.event_log_storage.get_latest_asset_check_execution_by_key(keys)
        return {(k.asset_key.to_user_string(), k.name): (got[k].run_id if k in got else None) for k in keys}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc for the UI's processes")
def test_kill_9_then_forget_then_the_ui_queue_its_view_and_its_stop(tmp_path):
    # a stand-in of its own: the replies it holds back for the killed runs reach no other test's counts
    with StandinServer(retry_after_s=0.05) as own:
        _kill_9_then_forget_then_the_ui(tmp_path, own)


def _kill_9_then_forget_then_the_ui(tmp_path, fresh_standin):
    env = cli_env(tmp_path, base_url=fresh_standin.base_url)
    env["DUEL_PROGRESS"] = "0"
    dh = Path(env["DAGSTER_HOME"])
    good = cli(env, "run", "--partition", "good", "--sample-new")
    assert good.returncode == 0, good.stderr[-3000:]

    # five `run`s of another partition, each killed with SIGKILL while its LLM calls are under way
    # the stand-in holds every reply far longer than the test waits: no call of a killed run completes, so
    # none is stored and each new run still has its calls to make (a reply completing just before the
    # kill would let a later run find all it needs in the call store and finish before it is killed)
    fresh_standin.state.latency_ms = 120_000
    killed = []
    try:
        with dg.DagsterInstance.from_config(str(dh)) as inst:
            for _ in range(5):
                proc = _start(env, "run", "--partition", "bad", "--sample-new", "--no-report")
                mine = dg.RunsFilter(tags={"duel/pid": str(proc.pid)}, statuses=[dg.DagsterRunStatus.STARTED])
                _wait_for("the run to start", lambda f=mine, p=proc: inst.get_runs(filters=f) or p.poll() is not None,
                          timeout=300, every=0.2)
                # then one more request arrives (counted on arrival, unlike the log, which a killed run's
                # replies still reach when they complete): its LLM calls are under way
                seen = fresh_standin.state.stats()["requests"]
                _wait_for("a request", lambda n=seen, p=proc: fresh_standin.state.stats()["requests"] > n
                          or p.poll() is not None, timeout=300)
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                proc.kill()
                proc.wait()
                killed.append(proc.pid)
    finally:
        fresh_standin.state.latency_ms = 0
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        bad_runs = inst.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "bad"}))  # newest first
        assert [int(r.tags["duel/pid"]) for r in bad_runs] == killed[::-1]
        # each `run` marked the runs of the processes killed before it failed; the last one is left
        assert [r.status for r in bad_runs] == [dg.DagsterRunStatus.STARTED] + [dg.DagsterRunStatus.FAILURE] * 4
        for r in bad_runs[1:]:
            failure = inst.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "Marked failed by duel-assets: its process (PID" in failure[-1].message
    # their planned checks are the checks' latest: what the UI would show red once the runs failed
    assert set(_latest_check_runs(dh).values()) <= {r.run_id for r in bad_runs}

    forgot = cli(env, "forget", "bad")
    assert forgot.returncode == 0, forgot.stderr[-3000:]
    assert forgot.stderr.count("marked failed, its process") == 1 and bad_runs[0].run_id in forgot.stderr
    assert "its 5 run(s) and their events" in forgot.stdout
    with dg.DagsterInstance.from_config(str(dh)) as inst:
        assert inst.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "bad"})) == []
        good_runs = {r.run_id for r in inst.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "good"}))}
    assert set(_latest_check_runs(dh).values()) <= good_runs

    # the UI (dagster dev + the stand-in it starts, no endpoint configured)
    port, standin_port = free_port(), free_port()
    ui_env = {k: v for k, v in env.items() if not k.startswith("LLM_")}
    log = open(tmp_path / "ui.log", "w")
    ui = subprocess.Popen([str(EXE), "ui", "--port", str(port), "--standin-port", str(standin_port)], env=ui_env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    web = Webserver(f"http://127.0.0.1:{port}", on_timeout=lambda: (tmp_path / "ui.log").read_text()[-3000:])
    family: set[int] = set()
    try:
        def up():
            assert ui.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
            try:
                return json.loads(urllib.request.urlopen(f"{web.url}/server_info", timeout=5).read())
            except OSError:
                return None
        web.wait("the webserver", up, timeout=240)
        web.wait("the code location", lambda: "sampled_turns" in json.dumps(web.gql("query { assetNodes { assetKey { path } } }")),
                 timeout=180)
        # the forgotten partition is gone, not failed: the graph's own query shows nothing red
        view = web.gql("""query($k: [AssetKeyInput!]!) {
            assetNodes(assetKeys: $k, loadMaterializations: true) { assetKey { path }
              partitionStats { numFailed numPartitions }
              assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status runId } } } } }
            assetsLatestInfo(assetKeys: $k) { assetKey { path } latestRun { status } } }""",
                       {"k": [{"path": [a]} for a in ("sampled_turns", "king_answers", "challenger_answers", "judge_scores")]})
        for node in view["assetNodes"]:
            assert node["partitionStats"] == {"numFailed": 0, "numPartitions": 1}, node
            for c in node["assetChecksOrError"]["checks"]:
                assert c["executionForLatestMaterialization"]["status"] == "SUCCEEDED", (node["assetKey"], c)
                assert c["executionForLatestMaterialization"]["runId"] in good_runs
        assert all(i["latestRun"]["status"] == "SUCCESS" for i in view["assetsLatestInfo"]), view["assetsLatestInfo"]

        # a new partition's run, launched as the UI's Materialize button does, starts within 60 s
        added = web.gql("""mutation($r: RepositorySelector!) { addDynamicPartition(repositorySelector: $r,
            partitionsDefName: "prompt_files", partitionKey: "fresh") { __typename } }""", {"r": REPO})
        assert added["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess"
        launched = web.gql("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                           {"p": {"selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["sampled_turns"]}]},
                                  "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "fresh"}]},
                                  "runConfigData": {}}})
        assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["launchRun"]["run"]["runId"]
        t0 = time.monotonic()

        def status() -> str:
            return web.gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})["runOrError"]["status"]
        web.wait("the run to leave the queue", lambda: status() not in ("QUEUED", "NOT_STARTED"), timeout=60, every=1.0)
        assert time.monotonic() - t0 <= 60
        web.wait("the run to finish", lambda: status() in ("SUCCESS", "FAILURE"), timeout=240, every=2.0)
        assert status() == "SUCCESS"

        # SIGTERM to `duel-assets ui`: every process it started ends and every port is free within 20 s
        family = _descendants(ui.pid)
        assert len(family) >= 4  # dagster dev, webserver, daemon, code server
        t0 = time.monotonic()
        ui.send_signal(signal.SIGTERM)
        _wait_for("`duel-assets ui` and every process it started to end",
                  lambda: ui.poll() is not None and not any(processes.alive(p) for p in family), timeout=20, every=0.2)
        assert time.monotonic() - t0 <= 20 and ui.returncode == 0
        assert _port_free(port) and _port_free(standin_port)
    finally:
        for pid in (family | _descendants(ui.pid)) if ui.poll() is None else family:
            if processes.alive(pid):
                os.kill(pid, signal.SIGKILL)
        if ui.poll() is None:
            ui.kill()
            ui.wait()
        log.close()
