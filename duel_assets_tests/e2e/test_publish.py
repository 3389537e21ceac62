"""`duel-assets publish`: --dry-run lists exactly the card and shards on disk; without a token the
command exits 2 with one line; the stand-in's rows (unless --force) and a rejecting gate are refused.
The upload itself needs the hub (not reachable from the tests): it is the `huggingface_hub` client's
`upload_folder` of exactly the listed files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duel_assets.lib.export.partition import export_partition
from duel_assets.lib.export.report import write_report
from duel_assets.lib.export.summary import write_partition_summary
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers.mini_swe_agent import read_swe_zero
from duel_assets.lib.sampling.sources import bundled_path
from duel_assets.lib.settings import Paths, parse_config
from duel_assets.lib.verdict.gate import gate

CANARY = "hf_canary_token_0123456789"


def _records(key: str, score: float, standin: bool) -> list[dict]:
    out = []
    for line in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()[:3]:
        t = cut_turns(read_swe_zero(json.loads(line)))[0][1]
        bucket = "final" if score >= 80 else "defeat"
        doc = {"prompt_file": key, "turn_id": t.turn_id, "bucket": bucket, "score": score, "opponent": "king",
               "turn": {k: getattr(t, k) for k in ("instance_id", "repo", "source", "protocol", "step", "history",
                                                   "reference", "tools", "license", "reward", "source_meta", "traj_id")},
               "challenger": {"model": "m", "standin": standin, "content": t.reference["content"], "tool_calls": None}}
        out.append({"turn_id": t.turn_id, "bucket": bucket, "score": score, "document": doc})
    return out


def make_export(home: Path, partitions: dict[str, tuple[float, bool]], require_gate: bool = True) -> None:
    cfg = parse_config({"export": {"require_gate": require_gate}, "gate": {"resamples": 200}})
    paths = Paths(home)
    for key, (score, standin) in partitions.items():
        records = _records(key, score, standin)
        g = gate([r["score"] for r in records], cfg.gate)
        rows = [{"turn_id": r["turn_id"], "score": r["score"], "bucket": r["bucket"]} for r in records]
        write_partition_summary(paths, key, g, rows, {})
        export_partition(paths, key, records, cfg.export, g.verdict)
    write_report(paths, list(partitions), cfg, 2)
    if not require_gate:
        (home / "chain.toml").write_text("[export]\nrequire_gate = false\n")


def publish(home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGINGFACE_API_KEY", "DUEL_CONFIG")}
    env.update(DUEL_HOME=str(home), HF_HUB_OFFLINE="1")
    if (home / "chain.toml").exists():
        env["DUEL_CONFIG"] = str(home / "chain.toml")
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "duel_assets.cli", "publish", "--repo", "acme/duel-data", *args],
                          env=env, cwd=home, capture_output=True, text=True, timeout=120)


def test_dry_run_lists_exactly_the_card_and_shards(tmp_path):
    make_export(tmp_path, {"p1": (95.0, False), "p2": (92.0, False)})
    out = publish(tmp_path, "--dry-run", "--revision", "v1")
    assert out.returncode == 0, out.stderr
    export = tmp_path / "export"
    on_disk = sorted(str(f.relative_to(export)) for f in export.rglob("*") if f.is_file() and not f.name.startswith("."))
    listed = sorted(line.split()[0] for line in out.stdout.splitlines() if line.startswith("  "))
    assert listed == on_disk and "README.md" in listed and "data/train-p1.parquet" in listed
    assert "datasets/acme/duel-data at revision v1" in out.stdout and "nothing was uploaded" in out.stdout
    for line in out.stdout.splitlines():
        if line.startswith("  "):
            name, size = line.split()[0], int(line.split()[1].replace(",", ""))
            assert size == (export / name).stat().st_size


def test_without_a_token_it_exits_2_with_one_line(tmp_path):
    make_export(tmp_path, {"p1": (95.0, False)})
    out = publish(tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "HF_TOKEN" in out.stderr


@pytest.mark.parametrize("partitions,require_gate,forced,why", [
    ({"p1": (95.0, True)}, True, False, "offline stand-in"),
    ({"p1": (95.0, False), "p2": (10.0, False)}, False, True, "REJECT gate"),
])
def test_the_stand_ins_rows_and_a_rejecting_gate_are_refused(tmp_path, partitions, require_gate, forced, why):
    make_export(tmp_path, partitions, require_gate)
    out = publish(tmp_path, *(["--force"] if forced else []), token=CANARY)
    assert out.returncode == 2 and why in out.stderr and CANARY not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1


def test_force_lets_the_stand_ins_rows_through_a_dry_run(tmp_path):
    make_export(tmp_path, {"p1": (95.0, True)})
    out = publish(tmp_path, "--dry-run", "--force")
    assert out.returncode == 0 and "3 rows" in out.stdout


def test_an_export_with_no_card_is_refused(tmp_path):
    out = publish(tmp_path, "--dry-run")
    assert out.returncode == 2 and "no dataset card" in out.stderr
