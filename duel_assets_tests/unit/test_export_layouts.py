"""The training-ready export: both layouts load with `datasets`, every row names
its target, reasoning is kept or dropped, and a `source` row read back by the project's own readers
gives the same turn."""
import json
from pathlib import Path

import pytest

from duel_assets.lib.export.card import render_card
from duel_assets.lib.export.sft import sft_row, shard_schema, write_partition_sft
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers import reader_for
from duel_assets.lib.settings import ExportConfig, GateConfig, Paths, parse_config
from duel_assets.lib.verdict.gate import gate
from duel_assets_tests.conftest import FIXTURES, REPO, shared_sample

FIX = FIXTURES
BUNDLED = REPO / "duel_assets" / "data" / "swe_zero_sample.jsonl"


def first_row(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def a_turn(fmt: str, row: dict, which: int = 0):
    turns, _ = cut_turns(reader_for(fmt)(row))
    return turns[which]


def document(turn, reasoning: str | None = None, **turn_extra) -> dict:
    """An export document whose challenger answered exactly the dataset's own next move."""
    rec = {k: getattr(turn, k) for k in ("instance_id", "repo", "source", "protocol", "step", "history", "reference", "tools")}
    rec.update(turn_extra)
    chal = {"model": "gen", "served_model": "gen-2025", "standin": False, "content": turn.reference.get("content"),
            "reasoning": reasoning, "tool_calls": turn.reference.get("tool_calls")}
    return {"prompt_file": "k", "turn_id": turn.turn_id, "bucket": "final", "score": 90.0, "opponent": "king",
            "turn": rec, "challenger": chal}


def turns_of_every_kind():
    cf = a_turn("coderforge", first_row(FIX / "coderforge_sample.jsonl"), 1)
    sr = a_turn("sera_rectified", first_row(FIX / "sera_rectified_sample.jsonl"), 1)
    sz = a_turn("swe_zero", first_row(BUNDLED), 1)
    return [(cf, {"license": "MIT", "source_meta": {"finish_reason": "tool_calls"}}),
            (sr, {"source_meta": {"rollout": "T2"}}), (sz, {})]


def read_back(row: dict, fmt: str, instance_id: str):
    """The project's reader on a `source` row; the turn whose reference is the row's target."""
    traj = reader_for(fmt)({"messages": row["messages"], "tools": row["tools"], "instance_id": instance_id})
    turns, _ = cut_turns(traj)
    return turns[-1]


@pytest.mark.parametrize("fmt,path,which", [
    ("coderforge", FIX / "coderforge_sample.jsonl", 3),
    ("sera_rectified", FIX / "sera_rectified_sample.jsonl", 1),
    ("swe_zero", BUNDLED, 2),
])
def test_a_source_row_read_back_by_the_reader_is_the_same_turn(fmt, path, which):
    turn = a_turn(fmt, first_row(path), which)
    row = sft_row(document(turn), layout="source", reasoning="keep")
    assert isinstance(row["messages"], str) and (row["tools"] is None) == (not turn.tools)
    msgs = json.loads(row["messages"])
    assert [m["train"] for m in msgs] == [i >= row["target_index"] for i in range(len(msgs))]
    back = read_back(row, fmt, turn.instance_id)
    assert back.history == turn.history and back.reference == turn.reference
    assert back.tools == turn.tools and back.protocol == turn.protocol and back.instance_id == turn.instance_id


def test_raw_sera_source_rows_read_back_too():
    raw = json.loads(shared_sample("sera", "sample_raw.json").read_text())[0]
    turn = a_turn("sera", raw, 3)
    row = sft_row(document(turn), layout="source", reasoning="keep")
    back = read_back(row, "sera", turn.instance_id)
    assert back.history == turn.history and back.reference == turn.reference


def test_coderforge_source_layout_keeps_its_json_string_encoding():
    turn, extra = turns_of_every_kind()[0]
    row = sft_row(document(turn, **extra), layout="source", reasoning="keep")
    msgs, tools = json.loads(row["messages"]), json.loads(row["tools"])
    assert [t["function"]["name"] for t in tools] == ["execute_bash", "str_replace_editor", "think", "finish"]
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["tool_calls"][0]["type"] == "function"
    assert isinstance(msgs[-1]["tool_calls"][0]["function"]["arguments"], str)
    assert row["license"] == "MIT" and json.loads(row["source_meta"]) == {"finish_reason": "tool_calls"}


def test_sera_rectified_source_layout_uses_its_roles_and_drops_reasoning_when_asked():
    turn, extra = turns_of_every_kind()[1]
    keep = json.loads(sft_row(document(turn, reasoning="weigh it"), "source", "keep")["messages"])
    assert {m["role"] for m in keep} <= {"system", "user", "reasoning", "tool_call", "tool_output", "answer"}
    target = [m for m in keep if m["train"]]
    assert [m["role"] for m in target] == ["reasoning", "tool_call"] and "weigh it" in target[0]["content"]
    drop = json.loads(sft_row(document(turn, reasoning="weigh it"), "source", "drop")["messages"])
    assert not any(m["role"] == "reasoning" for m in drop) and "<think>" not in json.dumps(drop)
    assert [m["role"] for m in drop if m["train"]] == ["tool_call"]


def test_openai_layout_moves_think_blocks_to_reasoning_content_or_drops_them():
    turn, _ = turns_of_every_kind()[1]  # SERA keeps <think> inside assistant content
    keep = sft_row(document(turn, reasoning="weigh it"), "openai", "keep")
    hist = [m for m in keep["messages"][:-1] if m["role"] == "assistant"]
    assert hist[0]["reasoning_content"] == "Find the code first." and "<think>" not in hist[0]["content"]
    target = keep["messages"][keep["target_index"]]
    assert target["train"] and "weigh it" in target["reasoning_content"] and target["tool_calls"]
    assert [m["train"] for m in keep["messages"]].count(True) == 1
    drop = sft_row(document(turn, reasoning="weigh it"), "openai", "drop")
    assert all(m["reasoning_content"] is None for m in drop["messages"])
    assert "<think>" not in json.dumps(drop["messages"])


@pytest.mark.parametrize("layout", ["openai", "source"])
@pytest.mark.parametrize("reasoning", ["keep", "drop"])
def test_each_layout_loads_with_datasets_as_one_table(tmp_path, layout, reasoning):
    import datasets

    paths = Paths(tmp_path)
    cfg = ExportConfig(layout=layout, reasoning=reasoning, require_gate=False)
    kinds = turns_of_every_kind()
    # two shards: one with tool calls and licences, one bash-block only (no tool calls at all)
    a = [{"turn_id": t.turn_id, "bucket": "final", "score": 90.0, "document": document(t, "r", **x)} for t, x in kinds[:2]]
    b = [{"turn_id": kinds[2][0].turn_id, "bucket": "refined", "score": 70.0, "document": document(kinds[2][0])}]
    assert write_partition_sft(paths, "a", a, cfg, "ACCEPT")["rows"] == 2
    assert write_partition_sft(paths, "b", b, cfg, "ACCEPT")["by_license"] == {"(none in the row)": 1}
    ds = datasets.load_dataset("parquet", data_files=str(paths.export_dir / "data" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 3 and set(ds.column_names) == set(shard_schema(layout).names)
    for row in ds:
        msgs = row["messages"] if layout == "openai" else json.loads(row["messages"])
        assert [m["train"] for m in msgs] == [i >= row["target_index"] for i in range(len(msgs))]
        assert msgs[-1]["train"] and not msgs[0]["train"]
    jsonl = datasets.load_dataset("json", data_files=str(paths.export_dir / "jsonl" / "*.jsonl"), split="train",
                                  cache_dir=str(tmp_path / "hf2"))
    assert len(jsonl) == 3
    licences = dict(zip(ds["source"], ds["license"]))
    assert licences == {"coderforge": "MIT", "sera_rectified": None, "swe_zero": None}


def test_the_card_states_the_layout_and_the_licences(tmp_path):
    cfg = parse_config({"export": {"layout": "source", "reasoning": "drop"},
                        "sources": [{"format": "sera_rectified", "path": "/data/sera.parquet"},
                                    {"format": "coderforge", "path": "/data/cf.parquet"}]})
    kinds = turns_of_every_kind()[:2]
    recs = [{"turn_id": t.turn_id, "bucket": "final", "score": 90.0, "document": document(t, **x)} for t, x in kinds]
    sft = write_partition_sft(Paths(tmp_path), "a", recs, cfg.export, "ACCEPT")
    g = gate([90.0, 90.0], GateConfig(resamples=100))
    summaries = {"a": {"gate": g.to_dict()}}
    card = render_card(summaries, {"a": {"sft": sft}}, g, ["a"], {}, cfg, {"standin": False})
    assert "Layout `source`" in card and "`sera_rectified`: SERA cleaned-rectified: roles" in card
    assert "keep the source's own chat format" not in card and "Reasoning: dropped" in card
    assert ("| sera_rectified | /data/sera.parquet | AmanPriyanshu/tool-reasoning-sft-CODING-allenai-SERA-data-cleaned-rectified "
            "| ODC-By-1.0 | required: credit the SERA datasets") in card
    assert "| coderforge | /data/cf.parquet | togethercomputer/CoderForge-Preview | per row (`license` column) |" in card
    assert "| coderforge | MIT | 1 |" in card and "| sera_rectified | (none in the row) | 1 |" in card
    assert "message_field_training: train" in card


def test_the_card_speaks_of_the_exported_partitions_and_of_defeats_when_exported(tmp_path):
    cfg = parse_config({"export": {"buckets": ["final", "refined", "defeat"]}})
    kinds = turns_of_every_kind()[:1]
    recs = [{"turn_id": t.turn_id, "bucket": "defeat", "score": -10.0, "document": document(t, **x)} for t, x in kinds]
    sft = write_partition_sft(Paths(tmp_path), "a", recs, cfg.export, "ACCEPT")
    g = gate([90.0, 90.0], GateConfig(resamples=100))
    real = {"answers": 2, "standin_answers": 0, "judgements": 4, "standin_judgements": 0,
            "served_models": {"king": {"gpt-4o-mini": 1}}}
    standin = {**real, "standin_answers": 2, "served_models": {"king": {"duel-standin/gpt-4o-mini": 1}}}
    summaries = {"a": {"gate": g.to_dict(), "provenance": real}, "b": {"gate": g.to_dict(), "provenance": standin}}
    card = render_card(summaries, {"a": {"sft": sft}}, g, ["a"], {"b": "gate: REJECT"}, cfg, {"standin": True})
    assert "stand-in answered" not in card and "gpt-4o-mini (1) (served)" in card and "duel-standin" not in card
    assert "holds answers that lost their duel" in card and "won its duel" not in card
    card = render_card(summaries, {"a": {"sft": sft}, "b": {"sft": sft}}, g, ["a", "b"], {}, cfg, {})
    assert "The offline stand-in answered, not a model: 2 of 4 answers" in card
