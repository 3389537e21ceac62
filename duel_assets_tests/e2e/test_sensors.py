"""Both sensors, called with a real Dagster instance and real materializations."""

import dagster as dg

from duel_assets.definitions import defs
from duel_assets.defs.resources import build_resources
from duel_assets.defs.sensors import judging_sensor, prompt_file_sensor
from duel_assets_tests.conftest import materialize

ANSWERS = ["sampled_turns", "pr_records", "king_answers", "challenger_answers"]


def tick(sensor, instance, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, definitions=defs(), cursor=cursor,
                                  resources={"settings": build_resources()["settings"]})
    return sensor(ctx)


def requests(result) -> list[dg.RunRequest]:
    return list(getattr(result, "run_requests", None) or [])


def test_sensors_run_by_default():
    assert prompt_file_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert judging_sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_prompt_file_sensor_registers_new_files_once(duel_env, instance):
    prompt = duel_env["home"] / "prompt"
    prompt.mkdir(parents=True, exist_ok=True)
    for name in ("batch_a.json", "batch_b.json", "bad name!.json"):
        (prompt / name).write_text("[]")
    res = tick(prompt_file_sensor, instance)
    assert sorted(r.partition_key for r in requests(res)) == ["batch_a", "batch_b"]
    (add,) = res.dynamic_partitions_requests
    assert sorted(add.partition_keys) == ["batch_a", "batch_b"]
    instance.add_dynamic_partitions("prompt_files", list(add.partition_keys))  # what the daemon does
    again = tick(prompt_file_sensor, instance)
    assert isinstance(again, dg.SkipReason)
    (prompt / "batch_c.json").write_text("[]")
    third = tick(prompt_file_sensor, instance)
    assert [r.partition_key for r in requests(third)] == ["batch_c"]


def test_judging_sensor_once_per_new_pair_and_never_half(duel_env, instance):
    materialize(instance, "P", selection=ANSWERS)
    first = tick(judging_sensor, instance)
    reqs = requests(first)
    assert [r.partition_key for r in reqs] == ["P"]
    second = tick(judging_sensor, instance, cursor=first.cursor)
    assert requests(second) == []
    # only the king side for Q: nothing
    materialize(instance, "Q", selection=["sampled_turns", "pr_records", "king_answers"])
    third = tick(judging_sensor, instance, cursor=second.cursor)
    assert requests(third) == []
    # Q's challenger lands: Q is requested, P is not requested again
    materialize(instance, "Q", selection=["challenger_answers"])
    fourth = tick(judging_sensor, instance, cursor=third.cursor)
    assert [r.partition_key for r in requests(fourth)] == ["Q"]
    # P is judged (as the requested run would), then a fresh pair of answers asks again, with a new run key
    materialize(instance, "P", selection=["judge_scores", "duel_verdict", "exported_buckets"])
    fifth = tick(judging_sensor, instance, cursor=fourth.cursor)
    assert requests(fifth) == []
    materialize(instance, "P", selection=["king_answers", "challenger_answers"])
    sixth = tick(judging_sensor, instance, cursor=fifth.cursor)
    assert [r.partition_key for r in requests(sixth)] == ["P"]
    assert requests(sixth)[0].run_key != reqs[0].run_key
    # a sensor restarted without a cursor still does not re-request judged pairs
    fresh = tick(judging_sensor, instance)
    assert sorted(r.partition_key for r in requests(fresh)) == ["P", "Q"]  # P's new pair, Q's unjudged pair
    materialize(instance, "Q", selection=["judge_scores"])
    materialize(instance, "P", selection=["judge_scores"])
    assert requests(tick(judging_sensor, instance)) == []


def test_a_new_challenger_alone_is_judged_once(duel_env, instance):
    """Re-materializing only challenger_answers for P leads to exactly one judging request for P."""
    materialize(instance, "P")  # the whole graph: answers and their judging
    settled = tick(judging_sensor, instance)
    assert requests(settled) == []
    materialize(instance, "P", selection=["challenger_answers"])
    first = tick(judging_sensor, instance, cursor=settled.cursor)
    assert [r.partition_key for r in requests(first)] == ["P"]
    second = tick(judging_sensor, instance, cursor=first.cursor)
    assert requests(second) == []
    # a restarted sensor (no cursor) asks for the same pair with the same run key: Dagster runs it once
    again = requests(tick(judging_sensor, instance))
    assert [r.run_key for r in again] == [requests(first)[0].run_key]
    materialize(instance, "P", selection=["judge_scores", "duel_verdict", "exported_buckets"])
    assert requests(tick(judging_sensor, instance)) == []
    # and a new king alone, too
    materialize(instance, "P", selection=["king_answers"])
    assert [r.partition_key for r in requests(tick(judging_sensor, instance, cursor=second.cursor))] == ["P"]


def test_needs_judging_rules():
    from duel_assets.lib.watch import needs_judging

    assert needs_judging(5, 6, None) and needs_judging(5, 6, 4)
    assert not needs_judging(5, None, None) and not needs_judging(None, 6, None)
    assert needs_judging(5, 6, 5)  # the challenger's answer alone is newer than the judging
    assert needs_judging(7, 3, 5)  # the king's answer alone is newer
    assert not needs_judging(5, 6, 7)  # both were judged
    assert not needs_judging(5, 6, None, answers_run_in_progress=True)  # that run may write more or judge itself
