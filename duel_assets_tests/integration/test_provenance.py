"""Provenance end to end, the `where` filter, hidden information for every source, licence facts."""
import json

import pytest

from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.pr_records import hidden_by_instance, hidden_share, read_pr_records
from duel_assets.lib.sampling.readers import read_coderforge, read_sera
from duel_assets.lib.sampling.readers.licenses import source_license
from duel_assets.lib.sampling.row_filter import compile_where
from duel_assets.lib.sampling.sampler import build_pool, sample_for_key
from duel_assets.lib.settings import ConfigError, PRRecordSpec, parse_config
from duel_assets_tests.conftest import FIXTURES, materialize, metadata, query, shared_sample

FIX = FIXTURES


def sera_cfg(**filters):
    return parse_config({"sources": [{"format": "sera", "path": str(FIX / "sera_raw_sample.jsonl")}], "filters": filters})


def test_extra_fields_travel_with_the_turn():
    row = json.loads((FIX / "coderforge_sample.jsonl").read_text().splitlines()[0])
    turns, _ = cut_turns(read_coderforge(row))
    t = turns[0]
    assert (t.license, t.reward) == ("MIT", 1.0)
    assert t.source_meta == {"finish_reason": "tool_calls", "image": "img/acme__widgets-42"}
    sera = read_sera(json.loads((FIX / "sera_raw_sample.jsonl").read_text().splitlines()[0]))
    assert {k: sera.source_meta[k] for k in ("teacher", "scale", "rollout", "line_level_recall", "func_name", "func_path")} == {
        "teacher": "GLM-4.6", "scale": "lite", "rollout": "T2", "line_level_recall": 0.9, "func_name": "tokenize",
        "func_path": "widgets/tokenize.py"}
    assert "target_patch" not in sera.source_meta and sera.hidden["patch"] == json.loads(
        (FIX / "sera_raw_sample.jsonl").read_text().splitlines()[0])["target_patch"]
    big = read_sera({**json.loads((FIX / "sera_raw_sample.jsonl").read_text().splitlines()[0]), "notes": "n" * 5000})
    assert big.source_meta["_omitted"] == {"notes": 5002}  # too long to carry: left out, and said so


def test_where_filters_on_row_fields():
    pool = build_pool(sera_cfg(where="rollout = 'T2' and line_level_recall > 0.75"))
    assert {t.instance_id for t in pool.turns} == {"widgets_1000"}
    assert pool.skipped["filtered_where"] == 2
    assert {t.instance_id for t in build_pool(sera_cfg(where="license IS NULL AND reward IS NULL")).turns} == {
        "widgets_1000", "widgets_1001", "widgets_1002"}
    with pytest.raises(ConfigError, match="no unused turn left") as e:  # a typo names a field no row has
        sample_for_key("k", sera_cfg(where="rolout = 'T2'"))
    assert "'filtered_where': 3" in str(e.value) and "filters.where names fields no row has: rolout" in str(e.value)
    f = sample_for_key("k", sera_cfg(where="rollout = 'T2' or rolout = 'x'"))
    assert f["sources"][0]["where_columns_never_seen"] == ["rolout"]


@pytest.mark.parametrize("where,message", [
    ("rollout = ", "does not parse"),
    ("no_such_fn(rollout)", "no_such_fn"),
    ("rollout = 'T2'; DROP TABLE x", "several statements"),
    ("line_level_recall + 1", "not a true/false condition"),
])
def test_a_bad_predicate_is_one_clear_line_before_any_sampling(where, message):
    with pytest.raises(ConfigError, match=message) as e:  # refused when the configuration loads, or at the latest before sampling
        cfg = parse_config({"sources": [{"format": "sera", "path": "/nonexistent/never-read.jsonl"}], "filters": {"where": where}})
        sample_for_key("k", cfg)
    assert str(e.value).startswith("filters.where: ") and "\n" not in str(e.value)


def test_where_cannot_read_files():
    with pytest.raises(ConfigError, match="file system operations are disabled"):
        compile_where("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0")


def test_real_sera_rows_carry_their_hidden_information():
    rows = json.loads(shared_sample("sera", "sample_raw.json").read_text())
    turns = [t for r in rows for t in cut_turns(read_sera(r))[0]]
    assert len(turns) > 50 and all(t.hidden and t.hidden["patch"] and t.hidden["problem_statement"] for t in turns)
    records = [{"instance_id": t.instance_id, "hidden": t.hidden} for t in turns]
    df = read_pr_records(None, sorted({t.instance_id for t in turns}), hidden_by_instance(records))
    assert not df["missing"].any() and set(df["record_source"]) == {"row"}
    share = hidden_share([t.instance_id for t in turns], df)
    assert share["hidden_info_share"] == 1.0 and share["turns_by_record_source"] == {"row": len(turns)}
    assert df.set_index("instance_id").loc["tinydb_10309", "patch"] == rows[0]["target_patch"]


def test_pr_record_sources_in_order(tmp_path):
    sera = tmp_path / "sera_targets.jsonl"
    sera.write_text(json.dumps({"instance_id": "widgets_1000", "target_patch": "diff --git a/x b/x\n"}) + "\n")
    sources = [PRRecordSpec(path=str(FIX / "swe_smith_instances.jsonl"), format="swe_smith"),
               PRRecordSpec(path=str(FIX / "tool_pr_records.jsonl"), format="swe_rebench"),
               PRRecordSpec(path=str(sera), format="sera")]
    ids = ["acme__widgets.1a2b3c4d.pr_42", "acme__widgets-42", "widgets_1000", "nobody-1", "rowcarried-1"]
    df = read_pr_records(sources, ids, {"rowcarried-1": {"patch": "diff --git a/r b/r\n", "problem_statement": "p"}})
    src = dict(zip(df["instance_id"], df["record_source"]))
    assert src == {"acme__widgets.1a2b3c4d.pr_42": sources[0].path, "acme__widgets-42": sources[1].path,
                   "widgets_1000": str(sera), "nobody-1": None, "rowcarried-1": "row"}
    assert list(df["missing"]) == [False, False, False, True, False]
    assert json.loads(df.iloc[2]["changed_files"]) == ["x"]
    with pytest.raises(ConfigError, match="format 'swe_bench'.* have no repo, base_commit, problem_statement, patch column"):
        read_pr_records([PRRecordSpec(path=str(sera), format="swe_bench")], ["widgets_1000"])


def test_pr_records_config_list_and_old_table():
    old = parse_config({"pr_records": {"path": "a.jsonl"}})
    new = parse_config({"pr_records": [{"path": "a.jsonl"}, {"path": "b.parquet", "format": "swe_smith"}]})
    assert [(s.path, s.format) for s in old.pr_records.specs] == [("a.jsonl", "auto")]
    assert [(s.path, s.format) for s in new.pr_records.specs] == [("a.jsonl", "auto"), ("b.parquet", "swe_smith")]
    with pytest.raises(ConfigError, match=r"pr_records\[0\].format: got \"v9\""):
        parse_config({"pr_records": [{"path": "a", "format": "v9"}]})


def test_licence_facts():
    assert source_license("sera", "allenai/Sera-4.6-Lite-T2")["license"] == "ODC-By-1.0"
    assert "attribution" in source_license("sera", "/data/sera.jsonl") and source_license("sera", "/data/x.jsonl")["license"] == "ODC-By-1.0"
    assert source_license("swe_zero", "AlienKevin/SWE-ZERO-12M-trajectories")["license"] == "Apache-2.0"
    cf = source_license("coderforge", "togethercomputer/CoderForge-Preview")
    assert cf["per_row"] and cf["license"] is None
    assert source_license("swe_zero", "bundled:swe_zero_sample.jsonl")["dataset"] == "duel_assets bundled samples"
    assert source_license("swe_agent", "/somewhere/else")["license"] is None


def test_pr_records_asset_reports_hidden_share_and_source(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + f'\n[[sources]]\nformat = "sera"\npath = "{FIX / "sera_raw_sample.jsonl"}"\n'
                   f'\n[filters]\nwhere = "rollout = \'T2\'"\n')
    res = materialize(instance, "sera_part", selection=["sampled_turns", "pr_records"])
    md = metadata(res, "pr_records")
    assert md["hidden_info_share"] == 1.0 and md["instances_missing"] == 0 and md["turns"] == 4
    assert md["turns_by_record_source"] == {"row": 4}
    rows = query(duel_env["home"], "SELECT DISTINCT record_source, missing FROM duel.pr_records WHERE prompt_file = 'sera_part'")
    assert rows == [("row", False)]
    assert metadata(res, "sampled_turns")["skipped_by_reason"] == {"source:filtered_where": 1}
