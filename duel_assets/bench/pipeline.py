"""A whole partition through Dagster.

* warm re-run (every call cached: 0 model calls) vs the same run with the model stage skipped
  (answers served from memory): ``warm_rerun_ratio``;
* a warm partition launched the way the UI and backfills launch it (GraphQL ``launchRun`` on
  ``dagster dev``: the run launcher starts a run worker process) vs ``duel-assets run --partition``
  for the same partition: ``ui_run_ratio`` = (run end - launch) / CLI wall time.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from duel_assets.devtools.ports import free_port
from duel_assets.devtools.webserver import GraphQLError, Webserver

from .common import CONCURRENCY, LATENCY_MS, TURNS, bench_source, standin_process, standin_stats, write_config

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ["sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets"]


def _materialize(inst, key: str, llm, home: Path) -> float:
    import dagster as dg

    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.io_manager import DuelDuckDBIOManager
    from duel_assets.defs.settings import DuelSettings
    from duel_assets.defs.warehouse import WarehouseResource

    warehouse = WarehouseResource(target=str(home / "warehouse.duckdb"))
    t0 = time.monotonic()
    res = dg.materialize(ALL_ASSETS, partition_key=key, instance=inst, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
                         resources={"settings": DuelSettings.from_environment(), "llm": llm, "warehouse": warehouse,
                                    "io_manager": DuelDuckDBIOManager(warehouse=warehouse)})
    assert res.success
    return time.monotonic() - t0


def bench_warm_rerun(tmp: Path) -> dict:
    import dagster as dg

    from duel_assets.defs.resources import LLMResource
    from duel_assets.defs.settings import DuelSettings
    from duel_assets.lib.calls import CallStore, LLMCaller
    from duel_assets.lib.settings import ChainConfig, Paths

    home = tmp / "duel_home"
    os.environ.update(DUEL_HOME=str(home), DUEL_CONFIG=str(write_config(tmp, bench_source(tmp, TURNS), CONCURRENCY)))
    out: dict = {}
    (tmp / "dagster_home").mkdir(exist_ok=True)
    with standin_process(LATENCY_MS) as base, dg.instance_for_test(temp_dir=str(tmp / "dagster_home")) as inst:
        os.environ.update(LLM_BASE_URL=base, LLM_API_KEY="bench-key")
        key = "bench_200"
        inst.add_dynamic_partitions("prompt_files", [key])
        cold = _materialize(inst, key, LLMResource(), home)
        n0 = standin_stats(base)["requests"]
        warm = _materialize(inst, key, LLMResource(), home)
        warm_calls = standin_stats(base)["requests"] - n0
        store = CallStore(Paths(home).cache_db)
        memo = dict(store.items())
        store.close()

        class MemoryStore:
            """Every completed call, in memory: the model stage skipped (no HTTP, no SQLite). Its
            claims answer every key from memory; a key it does not hold would have been a call."""

            lease_ttl_s = 60.0

            def get_many(self, keys):
                return {k: memo[k] for k in keys if k in memo}

            def register(self, holder, endpoint=None):
                pass

            unregister = renew = register

            def claim(self, holder, endpoint, wanted, limits, waiting_after=None):
                from duel_assets.lib.calls.flight import Decision

                missing = [w.key for w in wanted if w.key not in memo]
                if missing:
                    raise AssertionError(f"the skipped model stage wanted to make {len(missing)} call(s)")
                return {w.key: memo[w.key] for w in wanted}, Decision(), set()

        class SkippedModel(LLMResource):
            def caller(self, cfg: ChainConfig, paths: Paths, log, judges_only: bool = False):
                return LLMCaller(self.endpoint(), cfg.calls, MemoryStore(), log=log)

        skipped = _materialize(inst, key, SkippedModel(settings=DuelSettings.from_environment()), home)
        out.update(pipeline_cold_s=round(cold, 3), pipeline_warm_s=round(warm, 3), pipeline_model_skipped_s=round(skipped, 3),
                   warm_rerun_calls=warm_calls, warm_rerun_ratio=round(warm / skipped, 3))
        out.update(bench_ui_run(tmp, home, key, base))
    return out


def _gql(url: str, query: str, variables: dict) -> dict:
    return Webserver(url).gql(query, variables)


_LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message } } }"""
_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""


def bench_ui_run(tmp: Path, home: Path, key: str, base: str) -> dict:
    """The warm partition through ``dagster dev`` (webserver + daemon, the run launcher starting a
    run worker) against ``duel-assets run --partition`` in a fresh process, both on one DAGSTER_HOME."""
    from dagster import DagsterInstance

    from duel_assets.defs.instance import DAGSTER_YAML

    dh = tmp / "ui_dagster_home"
    dh.mkdir(exist_ok=True)
    (dh / "dagster.yaml").write_text(DAGSTER_YAML)
    env = {**os.environ, "DAGSTER_HOME": str(dh), "DUEL_PROGRESS": "0"}
    exe = Path(sys.executable).parent
    t0 = time.monotonic()
    cli = subprocess.run([str(exe / "duel-assets"), "run", "--partition", key], env=env, capture_output=True, text=True)
    cli_s = time.monotonic() - t0
    if cli.returncode != 0:
        raise RuntimeError(f"duel-assets run failed: {cli.stderr[-2000:]}")
    port = free_port()
    log = open(tmp / "dagster_dev.log", "w")
    proc = subprocess.Popen([str(exe / "dagster"), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2).read()
                Webserver(url).gql("query { version }")
                break
            except (OSError, GraphQLError):
                if time.monotonic() > deadline:
                    raise RuntimeError("dagster dev did not come up") from None
                time.sleep(1)
        n0 = standin_stats(base)["requests"]
        params = {"selector": {"repositoryLocationName": "duel_assets", "repositoryName": "__repository__",
                               "jobName": "__ASSET_JOB", "assetSelection": [{"path": [a]} for a in ASSETS]},
                  "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]}, "runConfigData": {}}
        res = _gql(url, _LAUNCH, {"p": params})["launchRun"]
        if res["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun: {res}")
        run_id = res["run"]["runId"]
        deadline = time.monotonic() + 600
        while (status := _gql(url, _STATUS, {"id": run_id})["runOrError"]["status"]) not in ("SUCCESS", "FAILURE", "CANCELED"):
            if time.monotonic() > deadline:
                raise RuntimeError("the UI-launched run did not finish")
            time.sleep(0.5)
        if status != "SUCCESS":
            raise RuntimeError(f"the UI-launched run ended {status}; see {tmp / 'dagster_dev.log'}")
        os.environ["DAGSTER_HOME"] = str(dh)
        stats = DagsterInstance.get().get_run_stats(run_id)
        if stats.end_time is None or stats.launch_time is None:
            raise RuntimeError(f"the UI-launched run {run_id} has no launch or end time in the run storage")
        ui_s = stats.end_time - stats.launch_time
        return {"ui_run_s": round(ui_s, 2), "cli_run_s": round(cli_s, 2), "ui_run_ratio": round(ui_s / cli_s, 3),
                "ui_run_calls": standin_stats(base)["requests"] - n0}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
