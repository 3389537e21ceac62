"""duel_verdict's metadata as the UI reads it: read back from the instance's event log, every entry
is a number, a line of text, a table, Markdown or a link; none is JSON text. The review link is there
when `[review] url` is set or a review page is running, and only then."""
import json
import os

import dagster as dg

from duel_assets.lib.review.running import announce, running_path, withdraw
from duel_assets_tests.conftest import materialize

NUMBERS = ("turns", "dueled", "parsed", "parse_rate", "mean_score", "accepted_share", "gate_mean_margin",
           "gate_lower_bound", "accepted_turns", "cost_usd", "cost_per_accepted_turn_usd")
TABLES = ("buckets", "excluded_by_reason", "bucket_notes", "per_judge", "metric_win_rates", "served_models",
          "spend_by_role")


def _latest(instance, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("duel_verdict"), asset_partitions=[key]), limit=1).records
    assert records, f"no duel_verdict materialization of {key} in the event log"
    return dict(records[0].asset_materialization.metadata)


def _json_text(v) -> bool:
    if not isinstance(v, (dg.TextMetadataValue, dg.MarkdownMetadataValue)):
        return False
    text = v.value.strip()
    if not text.startswith(("{", "[")):
        return False
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def test_entries_are_typed_for_reading_and_the_review_link_follows_the_configuration(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + '\n[prices."standin-generator"]\nprompt = 0.15\ncompletion = 0.6\n'
                   '[prices."standin-judge-1"]\nprompt = 1.0\ncompletion = 2.0\n'
                   '\n[review]\nurl = "http://review.example:8800/"\n')
    assert materialize(instance, "p.1").success
    md = _latest(instance, "p.1")
    assert md["review"] == dg.MetadataValue.url("http://review.example:8800/p/p.1")
    kinds = {name: type(v).__name__ for name, v in md.items()}
    assert not [n for n, k in kinds.items() if k == "JsonMetadataValue"], kinds
    assert not [n for n, v in md.items() if _json_text(v)], kinds
    for name in NUMBERS:
        assert isinstance(md[name], (dg.FloatMetadataValue, dg.IntMetadataValue)), (name, md[name])
    for name in TABLES:
        assert isinstance(md[name], dg.TableMetadataValue), (name, md[name])
    # the gate in one line: its verdict, then what it rests on
    gate = md["gate"].value
    assert gate.split(":")[0] in ("ACCEPT", "REJECT") and "mean margin" in gate and "\n" not in gate
    buckets = {r.data["bucket"]: r.data["turns"] for r in md["buckets"].records}
    assert sum(buckets.values()) == md["dueled"].value == 6
    judges = [r.data for r in md["per_judge"].records]
    assert [j["judge"] for j in judges] == ["standin-judge-1"] and judges[0]["parse_rate"] == 1.0
    metrics = [r.data["metric"] for r in md["metric_win_rates"].records]
    assert metrics == ["correctness", "grounding", "progress", "protocol", "efficiency"]
    assert md["cost_usd"].value > 0 and isinstance(md["cost_per_accepted_turn_usd"], (dg.FloatMetadataValue,
                                                                                         dg.NullMetadataValue))
    assert 0.0 <= md["accepted_share"].value <= 1.0 and 0 <= md["mean_score"].value <= 100


def test_a_running_review_page_is_linked_and_a_stopped_one_is_not(duel_env, instance):
    home = duel_env["home"]
    assert materialize(instance, "q").success  # neither configured nor running: no link
    assert "review" not in _latest(instance, "q")

    announce(home, "http://127.0.0.1:45678")  # this process stands for the running page
    assert materialize(instance, "q", selection=["duel_verdict"]).success
    assert _latest(instance, "q")["review"] == dg.MetadataValue.url("http://127.0.0.1:45678/p/q")

    withdraw(home)
    assert not running_path(home).exists()
    announce(home, "http://127.0.0.1:45678", pid=_dead_pid())  # a page that died without withdrawing
    assert materialize(instance, "q", selection=["duel_verdict"]).success
    assert "review" not in _latest(instance, "q")


def _dead_pid() -> int:
    """The id of a process that has exited."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


