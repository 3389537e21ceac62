"""A deployment on one machine for the scale tests: the Dagster instance in PostgreSQL
(deploy/dagster.yaml), the tables in a DuckLake (catalog in PostgreSQL, data files in a folder),
`dagster-webserver` + `dagster-daemon` started as separate processes and stopped at the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from duel_assets.devtools.webserver import Webserver
from duel_assets.lib.tables import SCHEMAS
from duel_assets.lib.warehouse import Warehouse
from duel_assets_tests.conftest import VOLATILE
from duel_assets_tests.postgres import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def deploy_yaml(max_concurrent_runs: int | None = None) -> str:
    """deploy/dagster.yaml, optionally with another run limit."""
    doc = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    if max_concurrent_runs is not None:
        doc["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    return yaml.safe_dump(doc, sort_keys=False)


def base_env(**extra: str) -> dict[str, str]:
    """The environment minus any provider endpoint or warehouse of the developer's shell."""
    drop = ("_BASE_URL", "_API_KEY")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(drop) and k not in ("DUEL_WAREHOUSE", "DUEL_LAKE_DATA_PATH", "DAGSTER_HOME")}
    env.update(extra)
    return env


def snapshot(warehouse: Warehouse, keys: list[str], home: Path) -> dict[str, list[str]]:
    """Every table's rows for ``keys``, sorted, without the columns that legitimately differ between
    two runs (cache hit, attempts) and with the run's home replaced in file paths."""
    out = {}
    marks = ", ".join("?" for _ in keys)
    for table, schema in SCHEMAS.items():
        cols = [c for c, _ in schema if c not in VOLATILE]
        sel = ", ".join(f"replace(CAST(\"{c}\" AS VARCHAR), '{home}', '<home>')" if c == "path" else f'"{c}"'
                        for c in cols)
        rows = warehouse.query(f"SELECT {sel} FROM duel.{table} WHERE prompt_file IN ({marks})", keys)
        out[table] = sorted(map(repr, rows))
    return out


class Servers:
    """dagster-webserver and dagster-daemon on a workspace, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs = env, logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.procs.append(subprocess.Popen([str(BIN / name), *args], cwd=ROOT, env=self.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> Servers:
        ws = str(ROOT / "workspace.yaml")
        self._spawn("dagster-daemon", "run", "-w", ws)
        self._spawn("dagster-webserver", "-w", ws, "-h", "127.0.0.1", "-p", str(self.port))
        self.wait("the webserver", self._up, timeout=180)
        self.wait("the code location", lambda: "sampled_turns" in json.dumps(
            self.gql("query { assetNodes { assetKey { path } } }")), timeout=180)
        return self

    def _up(self):
        for p in self.procs:
            assert p.poll() is None, f"{p.args[0]} exited: {self.log_tail()}"
        try:
            return json.loads(urllib.request.urlopen(f"{self.url}/server_info", timeout=5).read())
        except OSError:
            return None

    def log_tail(self, n: int = 4000) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-n:]}" for f in sorted(self.logs.glob("dagster-*.log")))

    def stop(self) -> None:
        """SIGTERM to each process group, then SIGKILL to whatever is left in it: the code servers
        and run workers the daemon and the webserver started live in their groups."""
        for p in self.procs:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        time.sleep(1)
        for p in self.procs:
            _signal_group(p.pid, signal.SIGKILL)
            p.wait()

    def gql(self, query: str, variables: dict | None = None) -> dict:
        return Webserver(self.url).gql(query, variables)

    def wait(self, what: str, fn, timeout: float = 300, every: float = 2.0):
        return Webserver(self.url, on_timeout=self.log_tail).wait(what, fn, timeout, every)

    def backfill(self, assets: list[str], keys: list[str], run_config: dict | None = None) -> str:
        params = {"partitionNames": keys, "assetSelection": [{"path": [a]} for a in assets], "fromFailure": False}
        if run_config:
            params["runConfigData"] = run_config
        d = self.gql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""", {"p": params})
        res = d["launchPartitionBackfill"]
        assert res["__typename"] == "LaunchBackfillSuccess", res
        return res["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        d = self.gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status } } }""", {"id": backfill_id})
        return d["partitionBackfillOrError"]["status"]

    def backfill_runs(self, backfill_id: str) -> list[dict]:
        d = self.gql("""query($v: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $v}]}) {
            ... on Runs { results { runId status startTime endTime tags { key value } } } } }""", {"v": backfill_id})
        return d["runsOrError"]["results"]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def servers(env: dict[str, str], logs: Path):
    s = Servers(env, logs)
    try:
        yield s.start()
    finally:
        s.stop()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most
