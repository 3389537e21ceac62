"""Benchmark decontamination: every way of matching is found on fixture trajectories built for it, a
turn of the same repository but another PR and other files is not matched, ``drop`` removes turns
before any call is made for them and ``tag`` keeps them with their ``contamination``; the counts
reach the prompt file, the partition's record, report.md and the card."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from duel_assets.lib.sampling.curation.decontaminate import Decontaminator, decide
from duel_assets.lib.sampling.curation.diffs import overlap, parse_patch
from duel_assets.lib.sampling.prompt_store import load_partition, sample_prompt_file
from duel_assets.lib.sampling.readers.mini_swe_agent import read_swe_zero
from duel_assets.lib.settings import parse_config
from duel_assets_tests.conftest import TEST_CHAIN, materialize, materialize_report, metadata, query

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "decontamination"
BENCH = FIX / "benchmark.jsonl"
TRAJ = FIX / "trajectories.jsonl"
# the fixture trajectories, by instance id: which benchmark instance each matches and how
EXPECTED = {"octo__parser-101": ("instance_id", "octo__parser-101"), "octo__parser-150": ("repo_commit", "octo__parser-205"),
            "octo__parser-210": ("repo_window", "octo__parser-205"), "nimbus__cloud-8": ("patch_overlap", "nimbus__cloud-7"),
            "zeta__other-3": ("problem_statement", "delta__db-9")}
CLEAN = "octo__parser-300"  # same repository as two instances, another PR, other files, far in time


def config(policy: str = "drop", **extra) -> dict:
    return {"sources": [{"format": "swe_zero", "path": str(TRAJ)}], "sampling": {"turns_per_file": 20, "seed": 1},
            "decontamination": {"benchmarks": [{"name": "verified", "path": str(BENCH), "policy": policy}], **extra}}


def trajectories():
    return [read_swe_zero(json.loads(line)) for line in TRAJ.read_text().splitlines()]


def test_hunks_overlap_only_in_a_common_file_and_intersecting_lines():
    a = parse_patch("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -10,5 +10,6 @@\n c\n-a\n+b\n"
                    "diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-x\n+y\n")
    assert a.files == {"x.py", "y.py"} and a.hunks["x.py"] == ((10, 14),) and a.hunks["y.py"] == ((1, 1),)
    touching = parse_patch("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -14,2 +14,3 @@\n")
    after = parse_patch("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -15,2 +15,3 @@\n")
    other_file = parse_patch("diff --git a/z.py b/z.py\n--- a/z.py\n+++ b/z.py\n@@ -10,5 +10,6 @@\n")
    created = parse_patch("diff --git a/y.py b/y.py\nnew file mode 100644\n--- /dev/null\n+++ b/y.py\n@@ -0,0 +1,3 @@\n")
    assert overlap(a, touching) == ["x.py"] and overlap(a, after) == [] and overlap(a, other_file) == []
    assert overlap(a, created) == ["y.py"]  # a created file has no old side: any hunk of it overlaps
    assert not parse_patch("not a diff at all")


def test_every_way_is_found_and_the_same_repository_alone_is_not_a_match():
    d = Decontaminator(parse_config(config()))
    found = {}
    for t in trajectories():
        matches = d.check(t.instance_id, t.repo, t.messages, t.source_meta, t.hidden)
        found[t.instance_id] = [(m.way, m.instance) for m in matches]
    assert found == {**{i: [w] for i, w in EXPECTED.items()}, CLEAN: []}
    assert d.versions()[0]["instances"] == 4 and d.versions()[0]["files"][0]["file"] == "benchmark.jsonl"


def test_the_strongest_way_is_the_one_recorded_and_ways_can_be_left_out():
    # octo__parser-101 also has the repository of two instances; its own id is the stronger match
    t = next(t for t in trajectories() if t.instance_id == "octo__parser-101")
    t.source_meta = {**t.source_meta, "created_at": "2024-03-02T00:00:00Z"}
    d = Decontaminator(parse_config(config()))
    assert [m.way for m in d.check(t.instance_id, t.repo, t.messages, t.source_meta, t.hidden)] == ["instance_id"]
    d = Decontaminator(parse_config(config(ways=["repo_window"])))
    assert [(m.way, m.instance) for m in d.check(t.instance_id, t.repo, t.messages, t.source_meta, t.hidden)] == \
        [("repo_window", "octo__parser-101")]
    tagged = Decontaminator(parse_config(config("tag")))
    dec = decide(tagged.check(t.instance_id, t.repo, t.messages, t.source_meta, t.hidden))
    assert dec.excluded_reason is None and dec.tags == ("verified:instance_id",)


def test_drop_removes_the_rows_while_sampling_and_the_prompt_file_says_so(tmp_path):
    cfg = parse_config(config())
    payload = sample_prompt_file(tmp_path, tmp_path / "prompt" / "k.json", "k", cfg)
    assert {t["instance_id"] for t in payload["turns"]} == {CLEAN}
    section = payload["decontamination"]
    assert section["dropped_rows"] == {"verified": {w: 1 for w, _ in EXPECTED.values()}}
    assert sorted(d["excluded_reason"] for d in section["dropped"]) == sorted(f"contaminated:verified:{w}" for w, _ in EXPECTED.values())
    assert section["benchmarks"][0]["name"] == "verified" and section["benchmarks"][0]["policy"] == "drop"
    assert {k: v for k, v in payload["skipped"].items() if k.startswith("contaminated:")} == \
        {f"contaminated:verified:{w}": 1 for w, _ in EXPECTED.values()}


def test_tag_keeps_the_turns_with_their_contamination(tmp_path):
    cfg = parse_config(config("tag"))
    payload = sample_prompt_file(tmp_path, tmp_path / "prompt" / "k.json", "k", cfg)
    tags = {t["instance_id"]: t.get("contamination") for t in payload["turns"]}
    assert set(tags) == {*EXPECTED, CLEAN}
    assert {i: v for i, v in tags.items()} == {**{i: [f"verified:{w}"] for i, (w, _) in EXPECTED.items()}, CLEAN: None}
    assert payload["decontamination"]["tagged_turns"] == {"verified": {w: 2 for w, _ in EXPECTED.values()}}  # 2 turns each


def test_a_prompt_file_sampled_before_the_benchmark_was_named_is_checked_when_loaded(tmp_path):
    plain = parse_config({k: v for k, v in config().items() if k != "decontamination"})
    pf = tmp_path / "prompt" / "k.json"
    sample_prompt_file(tmp_path, pf, "k", plain)
    loaded = load_partition(tmp_path, pf, "k", parse_config(config()))
    reasons = {t.instance_id: t.excluded_reason for t in loaded.turns}
    assert reasons == {**{i: f"contaminated:verified:{w}" for i, (w, _) in EXPECTED.items()}, CLEAN: None}
    assert loaded.meta["decontamination_at_load"]["excluded_turns"] == {"verified": {w: 2 for w, _ in EXPECTED.values()}}


@pytest.fixture
def fixture_env(duel_env):
    """The pipeline over the fixture trajectories; every turn is dueled even without a PR record."""
    def write(extra: str) -> None:
        duel_env["config"].write_text(TEST_CHAIN.replace("turns_per_file = 6", "turns_per_file = 20") + f'\n[[sources]]\nformat = "swe_zero"\npath = "{TRAJ}"\n'
                                      '\n[hidden_info]\nwhen_missing = "duel"\n' + extra)
    duel_env["write"] = write
    return duel_env


def _requests_for(standin, marker: str) -> int:
    return sum(marker.encode() in body for body in standin.state.bodies)


@pytest.mark.e2e
def test_no_call_is_made_for_a_dropped_turn_and_the_card_counts_them(fixture_env, instance):
    env, standin = fixture_env, fixture_env["standin"]
    from duel_assets.lib.settings import load_config

    drop = f'\n[decontamination]\nbenchmarks = [{{ name = "verified", path = "{BENCH}", policy = "drop" }}]\n'
    standin.state.bodies = []
    env["write"](drop)
    assert materialize(instance, "fresh").success  # sampled now: the contaminated rows never become turns
    # a prompt file sampled before any benchmark was named holds the contaminated trajectories' turns
    env["write"]("")
    sample_prompt_file(env["home"], env["home"] / "prompt" / "early.json", "early", load_config())
    env["write"](drop)
    assert materialize(instance, "early").success
    assert materialize_report(instance).success
    assert _requests_for(standin, "Document the command line options") > 0  # the clean turns were dueled
    for instance_id, (way, _) in EXPECTED.items():
        statement = next(t for t in trajectories() if t.instance_id == instance_id).messages[1]["content"][60:140]
        assert _requests_for(standin, statement) == 0, (instance_id, way)
    verdicts = dict(query(env["home"], "SELECT turn_id, excluded_reason FROM duel.duel_verdict WHERE prompt_file = 'early'"))
    assert sorted(r for r in verdicts.values() if r) == sorted(f"contaminated:verified:{w}" for w, _ in EXPECTED.values()
                                                              for _ in range(2))
    fresh = query(env["home"], "SELECT instance_id FROM duel.sampled_turns WHERE prompt_file = 'fresh'")
    assert {i for i, in fresh} == {CLEAN}
    report = (env["home"] / "report" / "report.md").read_text()
    card = (env["home"] / "export" / "README.md").read_text()
    # report.md counts every partition; the card the partitions in the export ("early" dueled nothing: not in it)
    for text, excluded in ((report, 2), (card, 0)):
        section = text.split("## Decontamination", 1)[1].split("## Near-duplicates", 1)[0]
        assert f"| verified | {BENCH} | test | - | drop | 4 |" in section
        for way, _ in EXPECTED.values():
            assert f"| verified | {way} | 1 | {excluded} | 0 |" in section  # 1 row dropped while sampling "fresh"


@pytest.mark.e2e
def test_the_metadata_of_sampled_turns_names_what_was_dropped_or_tagged(fixture_env, instance):
    fixture_env["write"](f'\n[decontamination]\nbenchmarks = [{{ name = "lite", path = "{BENCH}", policy = "tag" }}]\n')
    res = materialize(instance, "tagged", selection=["sampled_turns"])
    md = metadata(res, "sampled_turns")
    assert md["contaminated_excluded"] == 0
    counts = md["contaminated_by_benchmark"]
    assert {k: v for k, v in counts.items() if k.endswith("turns tagged")} == {f"lite:{w} turns tagged": 2 for w, _ in EXPECTED.values()}
    rows = query(fixture_env["home"], "SELECT instance_id, contamination FROM duel.sampled_turns")
    assert {i: c and json.loads(c) for i, c in rows} == {**{i: [f"lite:{w}"] for i, (w, _) in EXPECTED.items()}, CLEAN: None}


def test_pr_records_are_read_again_when_their_file_changes(tmp_path):
    from duel_assets.lib.sampling.curation.pr_lookup import lookup_records
    from duel_assets.lib.settings import PRRecordSpec

    path = tmp_path / "prs.jsonl"
    rec = {"instance_id": "acme__cache-5", "repo": "acme/cache", "base_commit": "a" * 40, "patch": "", "problem_statement": "x"}
    path.write_text(json.dumps(rec) + "\n")
    spec = [PRRecordSpec(path=str(path))]
    assert lookup_records(spec, ["acme__cache-5", "acme__cache-6"]) == {
        "acme__cache-5": {"repo": "acme/cache", "base_commit": "a" * 40, "patch": "", "problem_statement": "x"}}
    path.write_text(json.dumps({**rec, "base_commit": "b" * 40}) + "\n" + json.dumps({**rec, "instance_id": "acme__cache-6"}) + "\n")
    got = lookup_records(spec, ["acme__cache-5", "acme__cache-6"])
    assert got["acme__cache-5"]["base_commit"] == "b" * 40 and set(got) == {"acme__cache-5", "acme__cache-6"}


def test_a_small_source_read_whole_answers_as_the_filtered_query(tmp_path, monkeypatch):
    """Ids as given and lower-cased, repeated ids (the first row wins), ids asked in two cases, a
    missing field and a null id: the in-memory lookup of a small source gives what the query gives."""
    from duel_assets.lib.sampling.curation import pr_lookup
    from duel_assets.lib.settings import PRRecordSpec

    rows = [{"instance_id": "Acme__Cache-1", "repo": "acme/cache", "patch": "p1"},
            {"instance_id": "acme__cache-1", "repo": "acme/cache", "patch": "p1-lower"},
            {"instance_id": "acme__cache-2", "repo": "acme/cache", "problem_statement": "s2"},
            {"instance_id": "acme__cache-2", "repo": "acme/other", "patch": "late"},
            {"instance_id": None, "repo": "acme/none"},
            {"instance_id": "ACME__CACHE-3", "repo": "acme/cache", "target_patch": "t3"}]
    path = tmp_path / "prs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = [PRRecordSpec(path=str(path))]
    asks = [["Acme__Cache-1"], ["acme__cache-1"], ["ACME__CACHE-1", "acme__cache-1"], ["acme__cache-2", "None"],
            ["ACME__CACHE-3", "acme__cache-3"], ["acme__cache-3"], ["Acme__Cache-1", "ACME__CACHE-3", "x"]]
    monkeypatch.setattr(pr_lookup, "WHOLE_BYTES", 0)
    queried = [pr_lookup.lookup_records(spec, ids) for ids in asks]
    monkeypatch.setattr(pr_lookup, "WHOLE_BYTES", 1 << 20)
    whole = [pr_lookup.lookup_records(spec, ids) for ids in asks]
    assert whole == queried
    assert queried[0] == {"Acme__Cache-1": {"repo": "acme/cache", "patch": "p1"}} and queried[5] == {}
    assert queried[3] == {"acme__cache-2": {"repo": "acme/cache", "problem_statement": "s2", "patch": None}}
