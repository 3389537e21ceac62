"""The whole graph for two partitions against the stand-in over real HTTP."""
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from duel_assets_tests.conftest import REPO, materialize, materialize_report, metadata, query

ASSETS = ["sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets"]


def test_two_partitions_end_to_end(duel_env, instance):
    home = duel_env["home"]
    for key in ("prompts_12_000", "prompts_12_001"):
        res = materialize(instance, key)
        assert res.success
    # every table holds both partitions, and each row names its partition
    for t in ASSETS:
        rows = query(home, f"SELECT prompt_file, count(*) FROM duel.{t} GROUP BY 1 ORDER BY 1")
        assert [r[0] for r in rows] == ["prompts_12_000", "prompts_12_001"], t
        assert all(n > 0 for _, n in rows), t
    # the two numbered windows do not overlap, and each holds turns_per_file turns
    turns = query(home, "SELECT prompt_file, turn_id FROM duel.sampled_turns")
    by_file = {}
    for pf, tid in turns:
        by_file.setdefault(pf, set()).add(tid)
    assert len(by_file["prompts_12_000"]) == len(by_file["prompts_12_001"]) == 6
    assert not by_file["prompts_12_000"] & by_file["prompts_12_001"]
    # prompt files were written and reload to the same turns
    for pf, tids in by_file.items():
        doc = json.loads((home / "prompt" / f"{pf}.json").read_text())
        assert {t["turn_id"] for t in doc["turns"]} == tids
    # answers: one per turn, both sides format-checked, with usage from the stand-in
    for t in ("king_answers", "challenger_answers"):
        (n, ok, tokens, errs), = query(home, f"SELECT count(*), sum(format_ok::INT), sum(completion_tokens), count(error) FROM duel.{t}")
        assert n == 12 and ok == 12 and tokens > 0 and errs == 0
    # challenger saw the hidden record: its prompt differs from the king's, so the keys differ
    diff, = query(home, "SELECT count(*) FROM duel.king_answers k JOIN duel.challenger_answers c USING (prompt_file, turn_id) WHERE k.call_key <> c.call_key")
    assert diff[0] == 12
    # one judge, both orders: two parsed judgements per turn
    (jn, jparsed), = query(home, "SELECT count(*), sum(parsed::INT) FROM duel.judge_scores")
    assert (jn, jparsed) == (24, 24)
    orders = query(home, 'SELECT DISTINCT "order" FROM duel.judge_scores ORDER BY 1')
    assert [o for o, in orders] == ["challenger_first", "king_first"]
    # verdicts: scores in range and buckets exactly as the thresholds say
    for score, bucket, fmt_ok, leak in query(home, "SELECT score, bucket, challenger_format_ok, leak_suspect FROM duel.duel_verdict"):
        assert 0 <= score <= 100
        expected = "final" if score >= 80 else "refined" if score >= 66 else "defeat"
        if not fmt_ok and expected in ("final", "refined"):
            expected = "defeat"  # a challenger answer that breaks the protocol never trains
        elif leak and expected == "final":
            expected = "refined"
        assert bucket == expected
    # exports: one file per parsed turn, in its bucket's folder, holding both answers
    exported = query(home, "SELECT prompt_file, bucket, path FROM duel.exported_buckets")
    parsed, = query(home, "SELECT count(*) FROM duel.duel_verdict WHERE parsed")
    assert len(exported) == parsed[0] == 12
    for pf, bucket, path in exported:
        p = Path(path)
        assert p.parent == home / bucket / pf and p.exists()
        doc = json.loads(p.read_text())
        assert doc["bucket"] == bucket and doc["king"]["content"] and doc["challenger"]["content"]
        assert set(doc["per_metric"]) == {"correctness", "grounding", "progress", "protocol", "efficiency"}
    files = [f for b in ("final", "refined", "defeat") for f in (home / b).rglob("*.json")]
    assert len(files) == 12
    from duel_assets.lib.export.documents import LINEAGE_SQL

    lineage = query(home, LINEAGE_SQL.format(key="prompts_12_001"))
    assert len(lineage) == 6 and all(row[-1] for row in lineage)  # every turn followed to its export file
    assert not (home / "report" / "report.md").exists()  # the partitions write only their own files
    materialize_report(instance)
    report = (home / "report" / "report.md").read_text()
    assert "Gate, all partitions" in report and "prompts_12_000" in report and "prompts_12_001" in report
    assert report.count("| prompts_12_0") >= 12 + 2  # 12 turn rows + 2 partition gate rows
    # provenance: the rows name the stand-in as the server, and report.md's header says it answered
    for t in ("king_answers", "challenger_answers", "judge_scores"):
        assert query(home, f"SELECT DISTINCT served_model LIKE 'duel-standin/%', standin FROM duel.{t}") == [(True, True)], t
    header = report.split("## Gate")[0]
    assert "The offline stand-in answered, not a model" in header and "duel-standin/standin-generator" in header


def test_rematerializing_replaces_only_that_partition(duel_env, instance):
    home = duel_env["home"]
    materialize(instance, "prompts_12_000")
    materialize(instance, "prompts_12_001")
    before = {t: query(home, f"SELECT prompt_file, count(*) FROM duel.{t} GROUP BY 1 ORDER BY 1") for t in ASSETS}
    other_before = query(home, "SELECT turn_id, score FROM duel.duel_verdict WHERE prompt_file='prompts_12_001' ORDER BY 1")
    calls_before = len(duel_env["standin"].state.log)
    materialize(instance, "prompts_12_000")
    after = {t: query(home, f"SELECT prompt_file, count(*) FROM duel.{t} GROUP BY 1 ORDER BY 1") for t in ASSETS}
    assert after == before  # same counts: rows replaced, not appended
    dups = query(home, "SELECT count(*) FROM (SELECT prompt_file, turn_id, count(*) c FROM duel.sampled_turns GROUP BY 1, 2 HAVING c > 1)")
    assert dups[0][0] == 0
    assert query(home, "SELECT turn_id, score FROM duel.duel_verdict WHERE prompt_file='prompts_12_001' ORDER BY 1") == other_before
    # the re-run found every call in the cache: nothing was sent to the endpoint again
    assert len(duel_env["standin"].state.log) == calls_before
    n_files = len([f for b in ("final", "refined", "defeat") for f in (duel_env["home"] / b / "prompts_12_000").glob("*.json")])
    assert n_files == 6


def test_malformed_rows_are_skipped_and_counted(duel_env, instance, tmp_path):
    bundled = REPO / "duel_assets" / "data" / "swe_zero_sample.jsonl"
    good = bundled.read_text().splitlines()[:3]
    row = json.loads(good[0])
    no_assistant = {**row, "messages": [m for m in row["messages"] if m["role"] != "assistant"]}
    bad_json = {**row, "messages": "[{\"role\": \"system\", \"content\": "}
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join([*good, json.dumps(no_assistant), json.dumps(bad_json), "{not json at all"]) + "\n")
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + f'\n[[sources]]\nformat = "swe_zero"\npath = "{src}"\n')
    res = materialize(instance, "mixed_batch", selection=["sampled_turns"])
    md = metadata(res, "sampled_turns")
    reasons = dict(md["skipped_by_reason"])
    dup = reasons.pop("source:duplicate_history")  # the three good rows are rollouts of one task: shared first steps
    assert reasons == {"source:no_assistant_step": 1, "source:invalid_messages_json": 1, "source:invalid_json_line": 1}
    assert dup >= 1 and md["skipped"] == 3 + dup
    assert md["duplicate_history"] == dup  # the histories held twice, whichever step skipped them
    assert md["turns"] == 6
    n, = query(duel_env["home"], "SELECT count(*) FROM duel.sampled_turns WHERE prompt_file='mixed_batch'")
    assert n[0] == 6


def test_definitions_validate_and_share_one_partitions_def():
    root = REPO
    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    from duel_assets.definitions import defs

    d = defs()
    all_specs = {s.key.to_user_string(): s for s in d.resolve_all_asset_specs()}
    assert {k for k, s in all_specs.items() if s.group_name == "calibration"} == {"judge_calibration"}  # its own partitions
    specs = {k: s for k, s in all_specs.items() if s.group_name != "calibration"}
    assert sorted(specs) == sorted(ASSETS + ["duel_report"])
    assert len({id(specs[a].partitions_def) for a in ASSETS}) == 1 and specs["sampled_turns"].partitions_def
    assert specs["duel_report"].partitions_def is None  # the work over all partitions, in one asset
    assert all(s.group_name == "duel" for s in specs.values())


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def _demo(env: dict) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "duel-assets"
    out = subprocess.run([str(exe), "demo"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_demo_keeps_to_its_own_home_and_exports_rows_that_load(tmp_path, fresh_standin):
    """`make demo`, a `run` with another configuration, `make demo` again: the other configuration's
    rows, shards and partitions are untouched, and the demo's export loads with `datasets`."""
    import datasets

    from duel_assets_tests.conftest import CANARY_KEY, TEST_CHAIN

    home, user_dagster = tmp_path / "home", tmp_path / "dagster"
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))
            and k not in ("DAGSTER_HOME", "DUEL_CONFIG", "DUEL_WAREHOUSE", "DUEL_CALL_CACHE", "DUEL_PROGRESS")}
    base.update(DUEL_HOME=str(home), DAGSTER_HOME=str(user_dagster), HF_DATASETS_CACHE=str(tmp_path / "hf"))
    first = _demo(base)
    demo = home / "demo"
    assert f"duel-assets demo: in a home of its own, {demo} " in first.stdout and "NOT from a model" in first.stdout
    assert first.stdout.count("report: ") == 1 and f"report: {demo / 'report' / 'report.md'}" in first.stdout
    assert f"UI:        DUEL_HOME={demo} DAGSTER_HOME={demo / 'dagster_home'} " in first.stdout
    assert not (home / "prompt").exists() and not user_dagster.exists()  # nothing of the user's home was made
    for t in ASSETS:
        (n, parts), = query(demo, f"SELECT count(*), count(DISTINCT prompt_file) FROM duel.{t}")
        assert n > 0 and parts == 2, t
    assert sorted(p.name for p in (demo / "prompt").iterdir()) == ["demo_24_000.json", "demo_24_001.json"]
    parsed, = query(demo, "SELECT count(*) FROM duel.duel_verdict WHERE parsed")
    files = [f for b in ("final", "refined", "defeat") for f in (demo / b).rglob("*.json")]
    assert len(files) == parsed[0] > 0
    card = (demo / "export" / "README.md").read_text()
    assert "not for training" in card and "**Gate: REJECT**" in card and "yes, with gate REJECT (not required)" in card
    assert "Load: `datasets.load_dataset" in card
    ds = datasets.load_dataset(str(demo / "export"), split="train", cache_dir=str(tmp_path / "hf"))
    accepted, = query(demo, "SELECT count(*) FROM duel.duel_verdict WHERE bucket IN ('final', 'refined')")
    assert len(ds) == accepted[0] > 0 and all(ds["standin"]) and set(ds["prompt_file"]) == {"demo_24_000", "demo_24_001"}
    assert "(stand-in reply, not a model)" in ds[0]["messages"][-1]["content"]
    # the user's own configuration, home and Dagster instance
    cfg = tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN.replace('model = "standin-generator"', 'model = "standin-generator-user"')
                   + "\n[export]\nrequire_gate = false\n")  # shards whatever the gate says: they must stay
    user = {**base, "DUEL_CONFIG": str(cfg), "LLM_BASE_URL": fresh_standin.base_url, "LLM_API_KEY": CANARY_KEY}
    exe = Path(sys.executable).parent / "duel-assets"
    for args in (["sample", "--prompts", "6"], ["run", "--parallel", "1"]):
        out = subprocess.run([str(exe), *args], env=user, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
    rows = {t: query(home, f"SELECT * FROM duel.{t} ORDER BY ALL") for t in ASSETS}
    assert rows["king_answers"] and {r for r, in query(home, "SELECT DISTINCT model FROM duel.king_answers")} == {"standin-generator-user"}
    kept = {"export": _tree(home / "export"), "report": _tree(home / "report"), "prompt": _tree(home / "prompt"),
            **{b: _tree(home / b) for b in ("final", "refined", "defeat")}}
    assert any(k.startswith("data/train-prompts_6_000") for k in kept["export"])
    demo_before = _tree(demo / "export")
    _demo(base)  # again
    assert {t: query(home, f"SELECT * FROM duel.{t} ORDER BY ALL") for t in ASSETS} == rows
    assert {"export": _tree(home / "export"), "report": _tree(home / "report"), "prompt": _tree(home / "prompt"),
            **{b: _tree(home / b) for b in ("final", "refined", "defeat")}} == kept
    with dg.DagsterInstance.from_config(str(user_dagster)) as inst:
        assert list(inst.get_dynamic_partitions("prompt_files")) == ["prompts_6_000"]
    assert set(_tree(demo / "export")) == set(demo_before)  # the demo's own export: the same shards again


def test_demo_refuses_a_home_holding_prompt_files_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    (mine / "prompt").mkdir(parents=True)
    (mine / "prompt" / "prompts_400_000.json").write_text("[]")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DUEL_CONFIG")}
    out = subprocess.run([str(Path(sys.executable).parent / "duel-assets"), "demo", "--home", str(mine)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "holds prompt files the demo did not write (prompts_400_000.json)" in out.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["prompt"]  # nothing written
