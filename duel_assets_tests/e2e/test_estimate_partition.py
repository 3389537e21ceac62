"""`duel-assets estimate` against what the run then paid, on whole partitions (stand-in over HTTP)."""
import json

from duel_assets_tests.conftest import materialize

PRICED = """
[prices."standin-generator"]
prompt = 0.15
completion = 0.60
cached_prompt = 0.075
batch_prompt = 0.075
batch_completion = 0.30

[prices."standin-judge-1"]
prompt = 0.60
completion = 2.50
cached_prompt = 0.15
"""


def _prompt_files(home, keys: list[str], per_file: int) -> None:
    from duel_assets.lib.sampling.cutter import cut_turns
    from duel_assets.lib.sampling.readers import reader_for
    from duel_assets.lib.sampling.sources import BUNDLED_SOURCES, iter_rows

    read = reader_for("swe_zero")
    seen, turns = set(), []
    for _, row in iter_rows(BUNDLED_SOURCES[0]):
        for t in cut_turns(read(row))[0]:
            rec = t.to_record()
            h = json.dumps(rec["history"], sort_keys=True)
            if h not in seen:
                seen.add(h)
                turns.append(rec)
    (home / "prompt").mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        (home / "prompt" / f"{key}.json").write_text(json.dumps({"turns": turns[i * per_file:(i + 1) * per_file]}))


def test_the_estimate_is_within_15_percent_of_what_the_run_paid_and_then_shows_every_call_free(duel_env, instance):
    from duel_assets.cli.estimate import estimate
    from duel_assets.lib.settings import Paths

    home = duel_env["home"]
    duel_env["config"].write_text(duel_env["config"].read_text() + PRICED)
    _prompt_files(home, ["pilot", "p1", "p2"], 6)
    assert materialize(instance, "pilot").success  # its calls give the observed completion means
    paths = Paths.from_env()
    before = estimate(["p1", "p2"], paths)
    assert before["total"]["stored"] == 0 and before["total"]["to_pay"] > 0
    assert all(r["completion_from"] == "observed" for r in before["by_role"])
    for key in ("p1", "p2"):
        assert materialize(instance, key).success
    after = estimate(["p1", "p2"], paths)
    recorded = after["total"]["stored_paid_usd"]
    print(f"estimated ${before['total']['online_usd']:.6f} before, recorded ${recorded:.6f} after")
    assert after["total"]["calls"] == after["total"]["stored"] and after["total"]["online_usd"] == 0
    assert abs(before["total"]["online_usd"] - recorded) <= 0.15 * recorded
    # the judge has no batch prices: no batch total; the generator's batch cost is at its batch prices
    assert before["total"]["batch_usd"] is None
    for r in before["by_role"]:
        assert (r["batch_usd"] is None) == (r["role"] == "judge")
        assert r["role"] == "judge" or 0 < r["batch_usd"] < r["online_usd"]
