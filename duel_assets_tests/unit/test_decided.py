"""Judge calls that cannot change a verdict are skipped, and the buckets stay exactly the same."""
import random

from duel_assets.lib.duel.decided import decided_bucket, score_bounds
from duel_assets.lib.duel.stage import waves
from duel_assets.lib.settings import METRICS, BucketConfig
from duel_assets.lib.verdict.buckets import bucket_for
from duel_assets.lib.verdict.scores import score_turn

WEIGHTS = {m: 1.0 for m in METRICS}
BUCKETS = BucketConfig()


def _random_judgement(rng: random.Random) -> dict | None:
    if rng.random() < 0.15:  # did not parse
        return None
    style = rng.random()
    if style < 0.3:  # a strong opinion
        sign = rng.choice([-1, 1])
        return {m: sign * rng.randint(5, 10) for m in METRICS}
    if style < 0.4:
        return {m: 0 for m in METRICS}
    return {m: rng.randint(-10, 10) for m in METRICS}


def _final_bucket(all_margins: dict[str, list]) -> str | None:
    ts = score_turn(all_margins, WEIGHTS)
    return bucket_for(ts.score, BUCKETS) if ts.parsed else None


def test_a_decided_bucket_is_the_bucket_every_completion_would_give():
    rng = random.Random(7)
    decided_count = 0
    for _ in range(3000):
        judges = [f"j{i}" for i in range(rng.randint(1, 5))]
        full = {j: [_random_judgement(rng), _random_judgement(rng)] for j in judges}
        for k in range(len(judges)):  # judgements of the first k judges are in, the rest pending
            done = {j: full[j] for j in judges[:k]}
            pending = {j: 2 for j in judges[k:]}
            b = decided_bucket(done, pending, WEIGHTS, BUCKETS)
            if b is None:
                continue
            decided_count += 1
            # whatever the pending judges say (including failing to parse), the bucket is b
            for _ in range(20):
                completion = {**done, **{j: [_random_judgement(rng), _random_judgement(rng)] for j in pending}}
                assert _final_bucket(completion) == b
            assert _final_bucket(full) == b
    assert decided_count > 100  # the rule does fire


def test_bounds_are_tight_for_a_single_pending_judge():
    # one judge gave the challenger every cell; a second judge is out: the score is 100 (it fails
    # to parse or agrees) or 50 (it gives the opponent every cell)
    done = {"a": [{m: 5 for m in METRICS}, {m: 5 for m in METRICS}]}
    lo, hi, surely = score_bounds(done, {"b": 2}, WEIGHTS)
    assert (lo, hi, surely) == (50.0, 100.0, True)
    assert decided_bucket(done, {"b": 2}, WEIGHTS, BUCKETS) is None  # 50 is defeat, 100 is final
    lost = {"a": [{m: -5 for m in METRICS}, {m: -3 for m in METRICS}]}
    assert decided_bucket(lost, {"b": 2}, WEIGHTS, BUCKETS) == "defeat"  # at most 50
    # the turn must be parsed whatever happens: with 3 judges, one parsed judge is not enough
    assert decided_bucket(lost, {"b": 2, "c": 2}, WEIGHTS, BUCKETS) is None


def test_waves_ask_half_the_panel_first_then_one_at_a_time():
    assert waves(["a"], True) == [["a"]]
    assert waves(["a", "b", "c"], True) == [["a", "b"], ["c"]]
    assert waves(["a", "b", "c", "d", "e"], True) == [["a", "b", "c"], ["d"], ["e"]]
    assert waves(["a", "b", "c"], False) == [["a", "b", "c"]]


