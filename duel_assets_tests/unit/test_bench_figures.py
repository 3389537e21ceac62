"""The bench's reading of the host's CPU steal (``/proc/stat``)."""
import pytest

from duel_assets.bench.llm import cpu_ticks, steal_share


def test_steal_share_is_the_steal_column_over_all_cpu_time():
    # user nice system idle iowait irq softirq steal
    before = [100, 0, 50, 800, 0, 0, 0, 50]
    after = [160, 0, 70, 850, 0, 0, 0, 120]  # 200 ticks in all, 70 of them stolen
    assert steal_share(before, after) == 0.35
    assert steal_share(before, before) is None  # no time passed
    assert steal_share(None, after) is None and steal_share([1, 2, 3], [4, 5, 6]) is None  # not a Linux /proc/stat


def test_cpu_ticks_reads_this_machine_or_says_it_cannot():
    ticks = cpu_ticks()
    assert ticks is None or (len(ticks) >= 8 and all(t >= 0 for t in ticks))


def test_the_curation_bench_samples_every_row_on_both_sides_and_prints_its_ratio(tmp_path):
    from duel_assets.bench import report
    from duel_assets.bench.curation import RUNS, bench_curation

    r = bench_curation(tmp_path, rows=20 * RUNS, bench_instances=8)  # 20 instances; 4 of them in each list by id
    assert r["curation_rows"] == 2000 and r["curation_blocks"] == 8
    assert r["decontam_time_ratio"] == pytest.approx(r["curation_seconds"] / r["curation_plain_seconds"], rel=0.1)  # seconds rounded
    # the drop list removes whole instances (100 runs each), the tag list marks turns, and runs of one
    # instance that differ only in temporary paths, times and noise are near-duplicates
    assert r["curation_contaminated_rows"] > 0 and r["curation_contaminated_rows"] % RUNS == 0
    assert r["curation_tagged_turns"] > 0 and r["curation_near_duplicates"]["near_duplicate"] > 0
    assert 0 < r["curation_turns"] < r["curation_plain_turns"] <= r["curation_rows"]
    line = "\n".join(report(r))
    assert f"decontam_time_ratio {r['decontam_time_ratio']:.2f}" in line and "2,000 source rows" in line
