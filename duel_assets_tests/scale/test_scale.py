"""Beyond one machine, run for real (`make test-scale`): the Dagster instance in PostgreSQL
(deploy/dagster.yaml), the tables in a DuckLake whose catalog is in PostgreSQL, a backfill through
`dagster-webserver` + `dagster-daemon` with 4 runs at once, many writer processes at once, and a
run killed with SIGKILL — every table compared row by row with a single-machine run of the same
prompt files."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duel_assets.lib.warehouse import Warehouse
from duel_assets_tests.conftest import TEST_CHAIN
from duel_assets_tests.deployment import BIN, ROOT, base_env, deploy_yaml, max_overlap, servers, snapshot

ASSETS = ["sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets"]
KEYS = [f"prompts_54_{i:03d}" for i in range(9)]
BACKFILLED, KILLED = KEYS[:8], KEYS[8]


def _run(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args} failed:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def deployment(postgres, standin, tmp_path_factory):
    """Nine prompt files; the reference tables of a single-machine run of all nine; and the
    environment of a deployment (instance and DuckLake catalog in PostgreSQL) holding none yet."""
    standin.state.latency_ms, standin.state.fault_rate = 0.0, 0.0
    tmp = tmp_path_factory.mktemp("scale")
    cfg = tmp / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    common = dict(DUEL_CONFIG=str(cfg), LLM_BASE_URL=standin.base_url, LLM_API_KEY="scale-test-key", DUEL_PROGRESS="0")

    # one machine: a local warehouse.duckdb, SQLite instance, `duel-assets run` over all nine files
    single = tmp / "single"
    single_env = base_env(DUEL_HOME=str(single), DAGSTER_HOME=str(single / "dagster_home"), **common)
    _run([str(BIN / "duel-assets"), "sample", "--prompts", str(6 * len(KEYS)), "--per-file", "6"], single_env)
    assert sorted(p.stem for p in (single / "prompt").glob("*.json")) == KEYS
    t0 = time.monotonic()
    _run([str(BIN / "duel-assets"), "run"], single_env)
    single_s = time.monotonic() - t0
    reference = snapshot(Warehouse(single / "warehouse.duckdb"), KEYS, single)

    # the deployment: the same prompt files, Dagster and DuckLake in PostgreSQL, data files in a folder
    home = tmp / "deployed"
    (home / "prompt").mkdir(parents=True)
    for f in (single / "prompt").glob("*.json"):
        (home / "prompt" / f.name).write_bytes(f.read_bytes())
    dagster_home = tmp / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(deploy_yaml(max_concurrent_runs=4))
    instance_db, lake_db, calls_db = postgres.database("dagster"), postgres.database("lake"), postgres.database("calls")
    env = base_env(DUEL_HOME=str(home), DAGSTER_HOME=str(dagster_home), DUEL_COMPUTE_LOGS=str(tmp / "compute_logs"),
                   DUEL_WAREHOUSE=f"ducklake:postgres:{lake_db.conninfo}", DUEL_LAKE_DATA_PATH=str(tmp / "lake_data"),
                   DUEL_CALL_CACHE=calls_db.url("postgresql"), **instance_db.dagster_env(), **common)
    lake = Warehouse(env["DUEL_WAREHOUSE"], env["DUEL_LAKE_DATA_PATH"])
    yield {"tmp": tmp, "home": home, "env": env, "lake": lake, "reference": reference, "single_s": single_s,
           "postgres": postgres, "standin": standin}
    standin.state.latency_ms = 0.0


def _failures(log: Path) -> list[str]:
    """What the daemon's runs logged on a step's failure: the first lines of each error."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return ["\n".join(lines[i: i + 8]) for i, line in enumerate(lines) if "STEP_FAILURE" in line]


def _only(snap: dict, keys: list[str]) -> dict:
    return {t: [r for r in rows if any(f"'{k}'" in r for k in keys)] for t, rows in snap.items()}


def test_deploy_dagster_yaml_opens_on_postgres_and_runs(postgres, duel_env, monkeypatch):
    """deploy/dagster.yaml as shipped: it connects (psycopg2 driver), queues runs with its limits, and a
    run executes on it with its events in PostgreSQL."""
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from duel_assets_tests.conftest import materialize

    db = postgres.database("dagster_yaml")
    for k, v in db.dagster_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DUEL_COMPUTE_LOGS", str(duel_env["tmp"] / "compute_logs"))
    home = duel_env["tmp"] / "deployed_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 16
        limits = queue.tag_concurrency_limits
        assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
        res = materialize(instance, "prompts_12_000", selection=["sampled_turns", "pr_records"])
        assert res.success
        run = instance.get_run_by_id(res.run_id)
        assert run is not None and run.is_success
        assert instance.get_dynamic_partitions("prompt_files") == ["prompts_12_000"]
    import psycopg2

    con = psycopg2.connect(host=db.host, port=db.port, user=db.user, dbname=db.name)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", [res.run_id])
            assert cur.fetchone() == (1,)
    finally:
        con.close()


def test_backfill_through_webserver_and_daemon_into_ducklake(deployment):
    d = deployment
    env, lake = d["env"], d["lake"]
    assert lake.ensure_tables() >= 0  # tables before runs: writers never race to create them
    # the partitions are registered in the PostgreSQL instance, as the prompt-file sensor would
    _run([str(BIN / "duel-assets"), "sample", "--prompts", str(6 * len(KEYS)), "--per-file", "6"], env)
    d["standin"].state.latency_ms = 3000  # a provider's pace: runs last long enough to overlap
    t0 = time.monotonic()
    with servers(env, d["tmp"]) as s:
        # each run is its own process, launched by the daemon; its steps run inside it (the code
        # location's in-process executor: one interpreter per run instead of one per step)
        bid = s.backfill(ASSETS, BACKFILLED)
        status = s.wait("the backfill", lambda: (st := s.backfill_status(bid)) not in ("REQUESTED",) and st, timeout=900)
        runs = s.backfill_runs(bid)
    wall = time.monotonic() - t0
    d["standin"].state.latency_ms = 0.0
    assert status == "COMPLETED_SUCCESS", (status, [(r["runId"], r["status"]) for r in runs if r["status"] != "SUCCESS"],
                                           _failures(d["tmp"] / "dagster-daemon.log"))
    assert sorted(next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in runs) == BACKFILLED
    assert all(r["status"] == "SUCCESS" for r in runs)
    most = max_overlap([(r["startTime"], r["endTime"]) for r in runs])
    assert 2 <= most <= 4, most  # runs overlapped, never more than the instance's limit
    print(f"\nbackfill of {len(BACKFILLED)} partitions: {wall:.0f} s, at most {most} runs at once "
          f"(single machine, {len(KEYS)} partitions in one process: {d['single_s']:.0f} s)")
    got = snapshot(lake, BACKFILLED, d["home"])
    assert got == _only(d["reference"], BACKFILLED)
    assert all(got[t] for t in got)  # every table has rows for the backfilled partitions


def _empty_call_cache(d) -> None:
    import psycopg2

    con = psycopg2.connect(d["env"]["DUEL_CALL_CACHE"])
    try:
        with con, con.cursor() as cur:
            cur.execute("TRUNCATE calls, leases, holders, budget")
    finally:
        con.close()


def test_one_call_cache_for_all_workers(deployment):
    """The backfill's runs kept their calls in PostgreSQL (DUEL_CALL_CACHE): a re-run of a partition
    from another worker process, with the local cache/ folder gone, pays 0 calls."""
    d = deployment
    shutil.rmtree(d["home"] / "cache", ignore_errors=True)
    before = d["standin"].state.stats()["requests"]
    _run([str(BIN / "duel-assets"), "run", "--partition", BACKFILLED[0]], d["env"])
    assert d["standin"].state.stats()["requests"] == before
    assert not (d["home"] / "cache" / "llm_calls.sqlite").exists()  # nothing went to a local store
    assert snapshot(d["lake"], [BACKFILLED[0]], d["home"]) == _only(d["reference"], [BACKFILLED[0]])


def test_eight_processes_rematerialize_one_table_at_once(deployment):
    d = deployment
    env, lake = d["env"], d["lake"]
    dagster = str(BIN / "dagster")
    procs = [subprocess.Popen([dagster, "asset", "materialize", "-m", "duel_assets.definitions", "--select",
                               "sampled_turns", "--partition", k], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for k in BACKFILLED]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    failed = [(k, o[-2000:]) for k, p, o in zip(BACKFILLED, procs, outs) if p.returncode != 0]
    assert not failed, failed
    got = snapshot(lake, BACKFILLED, d["home"])["sampled_turns"]
    assert got == _only(d["reference"], BACKFILLED)["sampled_turns"]


def test_eight_writer_processes_conflict_and_retry_without_failures(deployment):
    """The DuckLake race itself: 8 processes replace their partitions of one table 12 times each,
    at once; commits that lose to another's delete are re-run, none fails, every row is right."""
    d = deployment
    go = d["tmp"] / "go"
    keys = [f"w{i}" for i in range(8)]
    procs = [subprocess.Popen([sys.executable, "-m", "duel_assets_tests.lake_writer", k, "12", str(go)], env=d["env"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in keys]
    time.sleep(3)  # every process imported and waiting
    go.write_text("go")
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:] or out
        results.append(json.loads(out.strip().splitlines()[-1]))
    retries = sum(r["retries"] for r in results)
    print(f"\n8 writers x 12 partition replaces: 0 failures, {retries} conflicts re-run")
    assert retries > 0  # the writers really raced (the path under test was taken)
    rows = d["lake"].query('SELECT prompt_file, count(*), min("round"), max("round") FROM duel.concurrent_writes '
                           "GROUP BY 1 ORDER BY 1")
    assert rows == [(k, 50, 11, 11) for k in keys]


def test_four_duel_assets_run_processes_at_once(deployment):
    """Four workers (`duel-assets run --partition K`, each its own process) re-run the whole graph of
    four partitions into the DuckLake at the same time: all succeed, every table equals the
    single-machine run."""
    d = deployment
    keys = BACKFILLED[:4]
    procs = [subprocess.Popen([str(BIN / "duel-assets"), "run", "--partition", k], env=d["env"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in keys]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    failed = [(k, o[-2000:]) for k, p, o in zip(keys, procs, outs) if p.returncode != 0]
    assert not failed, failed
    assert snapshot(d["lake"], keys, d["home"]) == _only(d["reference"], keys)


def test_sigkill_mid_partition_then_rerun_leaves_exact_rows(deployment):
    d = deployment
    env, lake, srv = d["env"], d["lake"], d["standin"]
    lake.ensure_tables()
    # start from an empty call cache (in PostgreSQL) so that the kill lands while calls are in flight
    _empty_call_cache(d)
    srv.state.latency_ms = 400
    before = len(srv.state.log)
    out = d["tmp"] / "killed_run.log"
    with out.open("w") as log:
        proc = subprocess.Popen([str(BIN / "duel-assets"), "run", "--partition", KILLED], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(srv.state.log) - before < 6:  # some answers are in, the partition is not done
            assert proc.poll() is None, f"the run ended before it could be killed:\n{out.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no LLM calls reached the stand-in"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        srv.state.latency_ms = 0.0
    assert proc.returncode == -signal.SIGKILL
    assert lake.query("SELECT count(*) FROM duel.duel_verdict WHERE prompt_file = ?", [KILLED]) == [(0,)]
    _run([str(BIN / "duel-assets"), "run", "--partition", KILLED], env)
    assert snapshot(lake, [KILLED], d["home"]) == _only(d["reference"], [KILLED])


def test_maintenance_expires_snapshots_and_deletes_unused_files(deployment):
    d = deployment
    data = Path(d["env"]["DUEL_LAKE_DATA_PATH"])
    files_before = sum(1 for _ in data.rglob("*.parquet"))
    snap_before = snapshot(d["lake"], KEYS, d["home"])
    done = d["lake"].maintain(keep_hours=0)
    files_after = sum(1 for _ in data.rglob("*.parquet"))
    print(f"\nmaintenance: {done}; parquet files {files_before} -> {files_after}")
    assert done["snapshots_after"] < done["snapshots_before"]
    assert files_after < files_before
    assert snapshot(d["lake"], KEYS, d["home"]) == snap_before  # nothing live was lost
