"""The UI shows `judge_calibration`: `duel-assets calibrate` in a fresh home, then the webserver's
GraphQL (what the UI reads) lists the asset in its group with the run's metadata. Run by `make test-ui`."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from duel_assets.devtools.ports import free_port
from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.calibration.oracle import JudgeOracle
from duel_assets_tests.conftest import FIXTURES, REPO, TEST_CHAIN

ROOT = REPO
FIXTURE = FIXTURES / "calibration_user.jsonl"
QUERY = """query { assetNodeOrError(assetKey: {path: ["judge_calibration"]}) { ... on AssetNode {
  groupName partitionKeys
  assetMaterializations(limit: 1) { partition metadataEntries { label
    ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
    ... on JsonMetadataEntry { jsonString } ... on MarkdownMetadataEntry { mdStr } } } } } }"""



def test_judge_calibration_and_its_metadata_through_graphql(tmp_path):
    home, dh = tmp_path / "duel", tmp_path / "duel" / "dagster_home"
    dh.mkdir(parents=True)
    cfg = tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    bin_dir = Path(sys.executable).parent
    with StandinServer(oracle=JudgeOracle.from_file(FIXTURE, accuracy=1.0)) as srv:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
        env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(dh), DUEL_CONFIG=str(cfg), LLM_BASE_URL=srv.base_url,
                   LLM_API_KEY="ui-test-key", DUEL_PROGRESS="0")
        out = subprocess.run([str(bin_dir / "duel-assets"), "calibrate", str(FIXTURE), "--key", "ui_set", "--json"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads(out.stdout)["accuracy"] == 1.0
    port = free_port()
    log = open(tmp_path / "webserver.log", "w")
    proc = subprocess.Popen([str(bin_dir / "dagster-webserver"), "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                             "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        node = None
        for _ in range(180):
            try:
                req = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": QUERY}).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
                data = json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]["assetNodeOrError"]
                if data.get("groupName"):
                    node = data
                    break
            except (OSError, KeyError, TypeError):
                pass
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            time.sleep(1)
        assert node is not None, "the webserver never served judge_calibration"
        assert node["groupName"] == "calibration" and node["partitionKeys"] == ["ui_set"]
        (mat,) = node["assetMaterializations"]
        entries = {e["label"]: e for e in mat["metadataEntries"]}
        assert mat["partition"] == "ui_set"
        assert entries["accuracy"]["floatValue"] == 1.0 and entries["kappa"]["floatValue"] == 1.0
        assert entries["pairs"]["intValue"] == 8 and entries["skipped"]["intValue"] == 6
        assert "| duel rule" in entries["figures"]["mdStr"]
        assert set(json.loads(entries["per_judge"]["jsonString"])) == {"standin-judge-1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
