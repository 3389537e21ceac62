"""The way a user meets it: `dagster dev` (webserver + daemon) in a temp home, prompt files dropped
into $DUEL_HOME/prompt/, everything else through GraphQL and a real headless browser.

Run by `make test-ui` (which installs Debian's Chromium and Playwright); `.ci/run` runs it.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from duel_assets.devtools.ports import free_port
from duel_assets.devtools.standin import StandinServer
from duel_assets.devtools.webserver import Webserver
from duel_assets.lib.sampling.sampler import sample_for_key
from duel_assets.lib.settings import load_config
from duel_assets.lib.system.files import write_json_atomic
from duel_assets_tests.conftest import REPO, TEST_CHAIN

ROOT = REPO
ASSETS = ["sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets"]
KEYS = ["ui_batch_a", "ui_batch_b"]
REPO = {"repositoryLocationName": "duel_assets", "repositoryName": "__repository__"}
SCREENSHOTS = Path(os.environ.get("DUEL_UI_SCREENSHOTS", ROOT / ".duel" / "ui-screenshots"))



class UI:
    def __init__(self, url: str):
        self.url = url

    def gql(self, query: str, variables: dict | None = None) -> dict:
        return Webserver(self.url).gql(query, variables)

    def wait(self, what: str, fn, timeout: float = 240, every: float = 2.0):
        return Webserver(self.url).wait(what, fn, timeout, every)

    def partition_keys(self) -> list[str]:
        d = self.gql('query { assetNodeOrError(assetKey: {path: ["sampled_turns"]}) { ... on AssetNode { partitionKeys } } }')
        return d["assetNodeOrError"]["partitionKeys"]

    def materialized(self, asset: str) -> set[str]:
        d = self.gql("""query($p: [String!]!) { assetNodeOrError(assetKey: {path: $p}) { ... on AssetNode {
            assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } } } } }""",
                     {"p": [asset]})
        st = d["assetNodeOrError"]["assetPartitionStatuses"]
        assert not st["failedPartitions"], (asset, st["failedPartitions"])
        return set(st["materializedPartitions"])

    def backfill(self, assets: list[str], keys: list[str]) -> str:
        d = self.gql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
                     {"p": {"partitionNames": keys, "assetSelection": [{"path": [a]} for a in assets], "fromFailure": False}})
        res = d["launchPartitionBackfill"]
        assert res["__typename"] == "LaunchBackfillSuccess", res
        return res["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        d = self.gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }""",
                     {"id": backfill_id})
        return d["partitionBackfillOrError"]["status"]

    def report_materializations(self) -> list[dict]:
        d = self.gql("""query { assetOrError(assetKey: {path: ["duel_report"]}) { ... on Asset {
            assetMaterializations { runId metadataEntries { label ... on TextMetadataEntry { text } } } } } }""")
        return d["assetOrError"].get("assetMaterializations") or []

    def runs(self, tag_key: str, tag_value: str) -> list[dict]:
        d = self.gql("""query($k: String!, $v: String!) { runsOrError(filter: {tags: [{key: $k, value: $v}]}) {
            ... on Runs { results { runId status tags { key value } } } } }""", {"k": tag_key, "v": tag_value})
        return d["runsOrError"]["results"]


def _partition_of(run: dict) -> str:
    return next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "duel"
    dh = home / "dagster_home"
    dh.mkdir(parents=True)
    from duel_assets.defs.instance import DAGSTER_YAML

    (dh / "dagster.yaml").write_text(DAGSTER_YAML)
    cfg = tmp / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    port = free_port()
    srv = StandinServer().start()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
    env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(dh), DUEL_CONFIG=str(cfg), LLM_BASE_URL=srv.base_url,
               LLM_API_KEY="ui-test-key", DUEL_PROGRESS="0")
    log = open(tmp / "dagster_dev.log", "w")
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.Popen([str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    u = UI(f"http://127.0.0.1:{port}")
    try:
        def up():
            try:
                return json.loads(urllib.request.urlopen(f"{u.url}/server_info", timeout=5).read())
            except OSError:
                assert proc.poll() is None, (tmp / "dagster_dev.log").read_text()[-3000:]
                return None
        u.wait("the webserver", up, timeout=180)
        u.wait("the code location", lambda: "sampled_turns" in json.dumps(u.gql(
            "query { assetNodes { assetKey { path } } }")), timeout=120)
        # a user drops two prompt files into $DUEL_HOME/prompt/
        state = {"home": home, "log": tmp / "dagster_dev.log", "standin": srv}
        conf = load_config(cfg)
        for k in KEYS:
            write_json_atomic(home / "prompt" / f"{k}.json", sample_for_key(k, conf))
        state["registered"] = u.wait("the prompt-file sensor to register both files",
                                     lambda: set(KEYS) <= set(u.partition_keys()) and u.partition_keys())
        # a backfill of the whole graph for both partitions
        bid = u.backfill(ASSETS, KEYS)
        state["backfill_status"] = u.wait("the whole-graph backfill", lambda: (s := u.backfill_status(bid)) not in ("REQUESTED",) and s, timeout=300)
        state["materialized"] = {a: u.materialized(a) for a in ASSETS}
        # the report automation materializes duel_report once, after the backfill's partitions landed
        state["reports_after_backfill"] = u.wait("duel_report after the backfill", u.report_materializations, timeout=180)
        # let the judging sensor tick at least once after the backfill (30 s interval): it must not re-judge
        time.sleep(40)
        state["judging_runs_after_full_backfill"] = u.runs("dagster/sensor_name", "judging_sensor")
        state["reports_after_tick"] = u.report_materializations()
        # new answers for both partitions: now the judging sensor fires, once per partition
        bid2 = u.backfill(["king_answers", "challenger_answers"], KEYS)
        state["answers_backfill_status"] = u.wait("the answers backfill", lambda: (s := u.backfill_status(bid2)) != "REQUESTED" and s, timeout=300)
        state["judging_runs"] = u.wait("the judging sensor's runs to finish", lambda: (
            rs := u.runs("dagster/sensor_name", "judging_sensor")) and len(rs) >= 2 and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in rs) and rs,
            timeout=300)
        time.sleep(35)  # one more tick: nothing further is requested
        state["judging_runs_final"] = u.runs("dagster/sensor_name", "judging_sensor")
        state["sensors"] = u.gql("""query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) {
            ... on Sensors { results { name sensorState { status } } } } }""", {"r": REPO})
        yield u, state
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        srv.stop()
        log.close()


def test_sensors_backfill_and_judging_through_graphql(ui):
    u, s = ui
    assert set(KEYS) <= set(s["registered"])
    sensors = {x["name"]: x["sensorState"]["status"] for x in s["sensors"]["sensorsOrError"]["results"]}
    assert sensors["prompt_file_sensor"] == "RUNNING" and sensors["judging_sensor"] == "RUNNING"
    assert s["backfill_status"].startswith("COMPLETED"), s["backfill_status"]
    for asset, done in s["materialized"].items():
        assert set(KEYS) <= done, asset
    # the prompt sensor requested sampled_turns + pr_records once per new file
    prompt_runs = u.runs("dagster/sensor_name", "prompt_file_sensor")
    assert sorted(_partition_of(r) for r in prompt_runs) == sorted(KEYS)
    # a whole-graph backfill judges in its own runs: the sensor did not add a second judging
    assert s["judging_runs_after_full_backfill"] == []
    # one report for the whole backfill, with the gate over both partitions in its metadata
    (report,) = s["reports_after_tick"]
    assert any(e["label"] == "gate_all_partitions" and e.get("text") in ("ACCEPT", "REJECT") for e in report["metadataEntries"])
    # fresh answers: exactly one judging run per partition, all succeeded, none afterwards
    runs = s["judging_runs_final"]
    assert sorted(_partition_of(r) for r in runs) == sorted(KEYS)
    assert all(r["status"] == "SUCCESS" for r in runs)


def test_asset_graph_and_partitions_in_a_real_browser(ui):
    from playwright.sync_api import sync_playwright

    u, s = ui
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # Dagster's first-visit "Join the Dagster community" dialog covers the page: skip it whenever it shows
        page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                 lambda: page.get_by_role("button", name="Skip").click())
        # the duel group's asset graph: all seven assets (the global graph folds groups once there
        # are several: duel, calibration)
        page.goto(f"{u.url}/locations/__repository__@duel_assets/asset-groups/duel", wait_until="domcontentloaded")
        try:
            for name in ASSETS:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / "asset_graph_failed.png"), full_page=True)
            raise
        graph_png = SCREENSHOTS / "asset_graph.png"
        page.screenshot(path=str(graph_png), full_page=True)
        body = page.inner_text("body")
        assert all(name in body for name in ASSETS)
        # duel_verdict's partitions view: both materialized partitions are listed
        page.goto(f"{u.url}/assets/duel_verdict?view=partitions", wait_until="domcontentloaded")
        for k in KEYS:
            page.get_by_text(k).first.wait_for(timeout=60_000)
        parts_png = SCREENSHOTS / "duel_verdict_partitions.png"
        page.screenshot(path=str(parts_png), full_page=True)
        body = page.inner_text("body")
        assert all(k in body for k in KEYS)
        # one partition's materialization: the gate and its figures are in the metadata
        page.get_by_text(KEYS[0]).first.click()
        page.get_by_text("gate_settings").first.wait_for(timeout=60_000)
        meta_png = SCREENSHOTS / "duel_verdict_partition_metadata.png"
        page.screenshot(path=str(meta_png), full_page=True)
        body = page.inner_text("body")
        assert "gate_settings" in body and "per_judge" in body and "score_histogram" in body
        browser.close()
    for f in (graph_png, parts_png, meta_png):
        assert f.stat().st_size > 10_000
    print(f"\nscreenshots written under {SCREENSHOTS}")
