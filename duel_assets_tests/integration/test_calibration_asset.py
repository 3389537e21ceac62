"""`duel-assets calibrate` and the `judge_calibration` asset in a real Dagster instance, against the
stand-in's judge oracle over HTTP; the gate's metadata carries the calibration once one exists."""
import json
import shutil

import dagster as dg
import pytest

from duel_assets.cli import main
from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.calibration.evidence import latest_calibration
from duel_assets.lib.calibration.oracle import JudgeOracle
from duel_assets_tests.conftest import FIXTURES, materialize, metadata, query

FIXTURE = FIXTURES / "calibration_user.jsonl"


@pytest.fixture
def oracle_env(duel_env, monkeypatch):
    """duel_env whose endpoint is a stand-in with a perfect judge oracle for the user-written set."""
    with StandinServer(oracle=JudgeOracle.from_file(FIXTURE, accuracy=1.0)) as srv:
        monkeypatch.setenv("LLM_BASE_URL", srv.base_url)
        yield {**duel_env, "standin": srv}


def test_calibrate_a_user_written_file(oracle_env, capsys):
    home = oracle_env["home"]
    assert main(["calibrate", str(FIXTURE), "--json"]) == 0
    out, err = capsys.readouterr()
    s = json.loads(out)
    assert s["pairs"] == 8 and s["labels"] == {"A": 1, "B": 5, "tie": 2}
    assert s["accuracy"] == s["kappa"] == s["position_consistency"] == s["parse_rate"] == 1.0
    assert s["per_judge"]["standin-judge-1"]["accuracy"] == 1.0 and s["tie_rate"] == 0.25
    # the judges asked for the reply's schema (judges.structured = "auto"), each judgement parsed
    assert s["parse_rate_by_judge_and_format"] == {"standin-judge-1": {"json_schema": {"judged": 16, "parsed": 16, "rate": 1.0}}}
    assert set(s["per_metric"]) == {"correctness", "grounding", "progress", "protocol"}
    assert all(v["agreement"] == 1.0 for v in s["per_metric"].values())
    assert s["skipped"] == 6 and s["skipped_by_reason"]["invalid_json"] == 1
    assert "line 5: invalid_json" in err and "line 12: duplicate_id (u1)" in err
    assert (home / "calibration" / "calibration_user.jsonl").read_bytes() == FIXTURE.read_bytes()
    assert query(home, "SELECT count(*), count(DISTINCT pair_id) FROM duel.judge_calibration") == [(16, 8)]
    # the text report names the figures and the skipped lines
    assert main(["calibrate", str(FIXTURE)]) == 0
    text = capsys.readouterr().out
    assert "| duel rule" in text and "accuracy" in text and "line 9: invalid_label" in text
    assert "Thresholds for \"challenger really better\" at target precision 0.9" in text


def test_bad_input_is_a_one_line_error(oracle_env, tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\n{}\n")
    assert main(["calibrate", str(junk)]) == 2
    assert "no valid labelled pair (2 lines skipped" in capsys.readouterr().err
    other = tmp_path / "calibration_user.jsonl"  # same key, different content
    shutil.copy(FIXTURE, other)
    assert main(["calibrate", str(FIXTURE), "--json"]) == 0
    with open(other, "a") as f:
        f.write("\n")
    capsys.readouterr()
    assert main(["calibrate", str(other)]) == 2
    assert "already holds a different set" in capsys.readouterr().err


def test_asset_metadata_in_a_real_instance_and_the_gate_evidence(oracle_env, instance):
    from duel_assets.definitions import defs
    from duel_assets.defs.calibration import calibration_files, judge_calibration
    from duel_assets.defs.resources import build_resources

    home = oracle_env["home"]
    res = materialize(instance, "p")  # a duel before any calibration: the gate says there is none
    assert metadata(res, "duel_verdict")["judge_calibration"].startswith("none for panel standin-judge-1")

    (home / "calibration").mkdir(exist_ok=True)
    shutil.copy(FIXTURE, home / "calibration" / "user_set.jsonl")
    instance.add_dynamic_partitions(calibration_files.name, ["user_set"])
    r = dg.materialize([judge_calibration], partition_key="user_set", instance=instance, resources=build_resources())
    md = metadata(r, "judge_calibration")
    assert md["pairs"] == 8 and md["accuracy"] == 1.0 and md["kappa"] == 1.0 and md["skipped"] == 6
    assert md["accuracy_ci"] == [1.0, 1.0] and md["panel"] == ["standin-judge-1"]
    assert "| duel rule" in md["figures"] and "unseen_path" in md["accuracy_by_kind"]
    assert md["suggested_thresholds"].keys() == {"final", "refined"} and "# Judge calibration" in md["report"]
    assert md["dagster/partition_row_count"] == 16
    latest = instance.get_latest_materialization_event(dg.AssetKey("judge_calibration"))
    assert latest.asset_materialization.partition == "user_set"  # what the UI reads

    spec = next(s for s in defs().resolve_all_asset_specs() if s.key == dg.AssetKey("judge_calibration"))
    assert spec.group_name == "calibration" and spec.partitions_def.name == "calibration_files"

    res = materialize(instance, "p", selection=["duel_verdict"])  # the gate now carries the evidence
    vm = metadata(res, "duel_verdict")
    assert vm["judge_calibration"].startswith("user_set: 8 labelled pairs, ")
    assert "accuracy 1.000 [1.000, 1.000], kappa 1.000" in vm["judge_calibration"]
    assert (vm["judge_calibration_accuracy"], vm["judge_calibration_kappa"], vm["judge_calibration_pairs"]) == (1.0, 1.0, 8)
    assert "Cohen's kappa 1.000" in vm["judge_calibration_summary"]
    # report.md and the dataset card show it next to the gate
    from duel_assets.defs.report import duel_report

    assert dg.materialize([duel_report], instance=instance, resources=build_resources()).success
    for text in ((home / "report" / "report.md").read_text(), (home / "export" / "README.md").read_text()):
        gate_at, ev_at = text.index("Gate: "), text.index("Judge panel calibration (`user_set`, 8 labelled pairs")
        assert ev_at > gate_at and "accuracy 1.000 [1.000, 1.000]" in text and "Cohen's kappa 1.000" in text


def test_latest_calibration_is_of_the_current_panel(tmp_path):
    from duel_assets.lib.calibration.report import save_summary

    base = {"pairs": 10, "accuracy": 0.8, "accuracy_ci": [0.7, 0.9], "kappa": 0.6, "kappa_ci": [0.5, 0.7],
            "position_consistency": 0.9, "parse_rate": 1.0, "file": "f"}
    save_summary(tmp_path, {**base, "key": "old", "panel": ["j1", "j2"], "created_at": "2026-01-01T00:00:00+00:00"})
    save_summary(tmp_path, {**base, "key": "new", "panel": ["j2", "j1"], "accuracy": 0.85, "created_at": "2026-02-01T00:00:00+00:00"})
    save_summary(tmp_path, {**base, "key": "other", "panel": ["j3"], "created_at": "2026-03-01T00:00:00+00:00"})
    ev = latest_calibration(tmp_path, ["j1", "j2"])
    assert ev.key == "new" and ev.accuracy == 0.85
    lines = ev.lines()
    assert "accuracy 0.850 [0.700, 0.900]" in lines[1] and "Cohen's kappa 0.600 [0.500, 0.700]" in lines[1]
    assert latest_calibration(tmp_path, ["j1"]) is None
