"""Skipping judge calls that cannot change a verdict leaves every bucket as it was, on the same cached replies."""
from collections import Counter


def test_same_buckets_with_and_without_skipping_on_the_same_cached_replies(duel_env, instance):
    from duel_assets_tests.conftest import materialize, metadata, query

    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace('models = ["standin-judge-1"]',
                                           'models = ["standin-judge-1", "standin-judge-2", "standin-judge-3"]\nskip_decided = false')
                   .replace("turns_per_file = 6", "turns_per_file = 40"))
    home = duel_env["home"]
    full = materialize(instance, "p")
    all_calls = metadata(full, "judge_scores")["llm_requested"]
    buckets = dict(query(home, "SELECT turn_id, bucket FROM duel.duel_verdict"))
    n = duel_env["standin"].state.stats()["requests"]
    cfg.write_text(cfg.read_text().replace("skip_decided = false", "skip_decided = true"))
    skipped = materialize(instance, "p")
    md = metadata(skipped, "judge_scores")
    assert duel_env["standin"].state.stats()["requests"] == n  # every reply came from the cache
    assert md["llm_skipped_decided"] > 0 and md["llm_requested"] == all_calls - md["llm_skipped_decided"]
    assert dict(query(home, "SELECT turn_id, bucket FROM duel.duel_verdict")) == buckets
    reasons = Counter(r for (r,) in query(home, "SELECT error FROM duel.judge_scores WHERE error_kind = 'skipped'"))
    assert reasons["decided_without_this_judge"] == md["llm_skipped_decided"]
