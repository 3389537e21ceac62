"""deploy/capacity.py's projection: the call count and wall time docs/operations.md "Capacity" quotes."""
import importlib.util

from duel_assets_tests.conftest import REPO

SPEC = importlib.util.spec_from_file_location("capacity", REPO / "deploy" / "capacity.py")
capacity = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(capacity)


def test_calls_and_wall_time_of_a_large_job():
    one = capacity.project(1_000_000, 1, latency_s=2.0, concurrency=32, judges=1, overhead_s=10.0)
    assert one["partitions"] == 5_000 and one["calls"] == 4_000_000  # king, challenger, one judge in two orders
    assert one["per_partition_s"] == 10.0 + 800 * 2.0 / 32
    assert one["wall_hours"] == round(5_000 * 60.0 / 3600, 2)
    many = capacity.project(1_000_000, 16, latency_s=2.0, concurrency=32, judges=1, overhead_s=10.0)
    assert many["wall_hours"] == round(313 * 60.0 / 3600, 2)  # 5,000 partitions dealt to 16 workers: 313 rounds
    assert capacity.project(1_000_000, 1, 2.0, 32, judges=3, overhead_s=10.0)["calls"] == 8_000_000


def test_a_provider_limit_bounds_the_whole_deployment():
    free = capacity.project(1_000_000, 64, latency_s=2.0, concurrency=32, judges=1, overhead_s=10.0)
    capped = capacity.project(1_000_000, 64, latency_s=2.0, concurrency=32, judges=1, overhead_s=10.0, rpm=6_000)
    # 4M calls at 6,000 requests per minute take at least 11.1 hours, however many workers
    assert capped["wall_hours"] >= 4_000_000 / 6_000 / 60 > free["wall_hours"]
