import json

import pandas as pd

from duel_assets.lib.pr_records import changed_files_from_patch, read_pr_records
from duel_assets_tests.conftest import shared_sample


def test_changed_files_from_patch():
    patch = ("diff --git a/src/x.py b/src/x.py\n--- a/src/x.py\n+++ b/src/x.py\n@@\n-a\n+b\n"
             "diff --git a/old.txt b/new.txt\nrename from old.txt\nrename to new.txt\n")
    assert changed_files_from_patch(patch) == ["src/x.py", "new.txt"]
    assert changed_files_from_patch("") == []


def test_real_v2_record_and_a_missing_one():
    path = shared_sample("swe_rebench_v2", "sample.json")
    df = read_pr_records(str(path), ["Unidata__netcdf-c-1925", "nobody__nothing-1"])
    rec = df.set_index("instance_id").loc["Unidata__netcdf-c-1925"]
    assert not rec["missing"] and rec["repo"] == "Unidata/netcdf-c"
    assert "libdispatch/nclog.c" in json.loads(rec["changed_files"])
    miss = df.set_index("instance_id").loc["nobody__nothing-1"]
    assert bool(miss["missing"]) and miss["patch"] is None


def test_parquet_with_missing_optional_columns(tmp_path):
    p = tmp_path / "prs.parquet"
    pd.DataFrame([{"instance_id": f"o__r-{i}", "repo": "o/r", "base_commit": "c", "problem_statement": "p",
                   "patch": f"diff --git a/f{i}.py b/f{i}.py\n", "test_patch": ""} for i in range(50)]).to_parquet(p)
    df = read_pr_records(str(p), ["o__r-7", "o__r-9"])
    assert list(df["instance_id"]) == ["o__r-7", "o__r-9"]
    assert df["pr_description"].isna().all()
    assert json.loads(df.iloc[0]["changed_files"]) == ["f7.py"]


def test_bundled_records_cover_bundled_samples():
    ids = [json.loads(l)["instance_id"] for l in open(__import__("duel_assets.lib.sources", fromlist=["x"]).bundled_path("swe_zero_sample.jsonl"))]
    df = read_pr_records(None, ids)
    assert not df["missing"].any()
