import json

import pandas as pd

from duel_assets.lib.sampling.pr_records import cached_pr_records, changed_files_from_patch, read_pr_records
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
    ids = [json.loads(line)["instance_id"] for line in open(__import__("duel_assets.lib.sampling.sources", fromlist=["x"]).bundled_path("swe_zero_sample.jsonl"))]
    df = read_pr_records(None, ids)
    assert not df["missing"].any()


def test_partition_cache_is_reused_until_the_source_or_ids_change(tmp_path):
    src = tmp_path / "prs.jsonl"
    src.write_text(json.dumps({"instance_id": "a__b-1", "repo": "a/b", "base_commit": "c", "problem_statement": "p",
                               "patch": "diff --git a/x.py b/x.py\n", "test_patch": ""}) + "\n")
    cache = tmp_path / "cache" / "p1.parquet"
    df1, hit1 = cached_pr_records(str(src), ["a__b-1", "zz-9"], cache)
    df2, hit2 = cached_pr_records(str(src), ["zz-9", "a__b-1"], cache)
    assert (hit1, hit2) == (False, True)
    assert df1.to_dict("records") == df2.to_dict("records")
    assert list(df2["missing"]) == [False, True]
    _, hit3 = cached_pr_records(str(src), ["a__b-1"], cache)  # other ids
    assert not hit3
    src.write_text(src.read_text().replace('"repo": "a/b"', '"repo": "a/c"'))  # the source changed
    df4, hit4 = cached_pr_records(str(src), ["a__b-1"], cache)
    assert not hit4 and df4.iloc[0]["repo"] == "a/c"


def test_filter_and_projection_are_pushed_into_the_parquet_scan(tmp_path):
    import duckdb

    from duel_assets.lib.sampling.pr_records import _scan_sql, pr_query

    p = tmp_path / "big.parquet"
    pd.DataFrame([{"instance_id": f"o__r-{i:06d}", "repo": "o/r", "base_commit": "c", "problem_statement": "p" * 50,
                   "patch": "x" * 200, "test_patch": "t" * 200, "meta": "m" * 300} for i in range(20_000)]
                 ).to_parquet(p, row_group_size=1000)
    scan, _ = _scan_sql(str(p))
    con = duckdb.connect()
    plan = "\n".join(r[1] for r in con.execute("EXPLAIN " + pr_query(scan, '"repo", "patch"', ["o__r-000007"])).fetchall())
    con.close()
    scan_part = plan[plan.index("PARQUET_SCAN") if "PARQUET_SCAN" in plan else plan.index("READ_PARQUET"):]
    assert "instance_id" in scan_part and ("Filters" in scan_part or "File Filters" in scan_part)
    assert "test_patch" not in plan and "meta" not in plan  # columns never read
    df = read_pr_records(str(p), ["o__r-000007", "O__R-019999"])
    assert list(df["missing"]) == [False, False]
