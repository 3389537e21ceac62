"""The bench's reading of the host's CPU steal (``/proc/stat``)."""
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
