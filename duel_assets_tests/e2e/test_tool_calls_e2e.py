"""A tool_calls partition (CoderForge-format rows) through all seven assets and into the SFT export."""
import json

from duel_assets_tests.conftest import FIXTURES, materialize, materialize_report, metadata, query

FIX = FIXTURES


def test_coderforge_partition_end_to_end_and_sft_export(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text() + f"""
[[sources]]
format = "coderforge"
path = "{FIX / 'coderforge_sample.jsonl'}"

[pr_records]
path = "{FIX / 'tool_pr_records.jsonl'}"

[export]
require_gate = false
""")
    home = duel_env["home"]
    res = materialize(instance, "cf_batch")
    assert query(home, "SELECT DISTINCT protocol, source FROM duel.sampled_turns") == [("tool_calls", "coderforge")]
    n, = query(home, "SELECT count(*) FROM duel.sampled_turns")
    assert n[0] == 6
    tools = json.loads(query(home, "SELECT tools FROM duel.sampled_turns LIMIT 1")[0][0])
    assert {t["function"]["name"] for t in tools} == {"execute_bash", "str_replace_editor", "think", "finish"}
    assert query(home, "SELECT count(*) FROM duel.pr_records WHERE missing") == [(0,)]
    # both sides answered with exactly one known tool call, validated against the schema
    for t in ("king_answers", "challenger_answers"):
        rows = query(home, f"SELECT format_ok, tool_calls, action FROM duel.{t}")
        assert len(rows) == 6
        for ok, calls, action in rows:
            call = json.loads(calls)
            assert ok and len(call) == 1 and call[0]["function"]["name"] == "execute_bash"
            assert "command" in json.loads(call[0]["function"]["arguments"]) and action.startswith("execute_bash(")
    # every distinct generation request went out once (turns with the same history share theirs)
    gen = [e for e in duel_env["standin"].state.log if e["model"] == "standin-generator"]
    keys = query(home, "SELECT count(DISTINCT call_key) FROM (SELECT call_key FROM duel.king_answers "
                       "UNION ALL SELECT call_key FROM duel.challenger_answers)")[0][0]
    assert len(gen) == len({e["call_key"] for e in gen}) == keys
    assert duel_env["standin"].state.stats()["repeats"] == 0
    assert query(home, "SELECT count(*) FROM duel.judge_scores WHERE parsed") == [(12,)]
    exported = query(home, "SELECT bucket, path FROM duel.exported_buckets")
    assert len(exported) == 6
    md = metadata(res, "exported_buckets")
    accepted = sum(1 for b, _ in exported if b in ("final", "refined"))
    assert md["sft_rows"] == accepted
    # the export loads with datasets; the tool call is the last assistant message, and the only one trained
    import datasets

    materialize_report(instance)  # the card is duel_report's
    export_dir = home / "export"
    card = (export_dir / "README.md").read_text()
    assert "coderforge" in card and "## Gate" in card
    jsonl = sft_jsonl(export_dir)
    assert len(jsonl) == accepted
    if accepted:
        ds = datasets.load_dataset(str(export_dir), split="train", cache_dir=str(duel_env["tmp"] / "hf"))
        assert len(ds) == accepted
        row = ds[0]
        last = row["messages"][-1]
        assert last["role"] == "assistant" and last["tool_calls"][0]["function"]["name"] == "execute_bash"
        assert row["target_index"] == len(row["messages"]) - 1
        assert [m["train"] for m in row["messages"]] == [False] * row["target_index"] + [True]
        assert row["tools"][0]["function"]["name"] == "execute_bash"
        assert "command" in json.loads(row["tools"][0]["function"]["parameters"])["properties"]
        assert row["protocol"] == "tool_calls"
        tool_msgs = [m for m in row["messages"] if m["role"] == "tool"]
        assert all(m["tool_call_id"] for m in tool_msgs)
    # the same partition in the `source` layout: CoderForge's own JSON-string columns, read back by its reader
    cfg.write_text(cfg.read_text().replace("require_gate = false", 'require_gate = false\nlayout = "source"'))
    materialize(instance, "cf_batch", selection=["exported_buckets"])
    materialize_report(instance)
    rows = sft_jsonl(export_dir)
    assert len(rows) == accepted and all(isinstance(r["messages"], str) and isinstance(r["tools"], str) for r in rows)
    card = (export_dir / "README.md").read_text()
    assert "Layout `source`" in card and "- `coderforge`: CoderForge-Preview" in card and "| coderforge |" in card
    assert accepted  # the stand-in's duels on these fixtures accept some turns
    from duel_assets.lib.sampling.cutter import cut_turns
    from duel_assets.lib.sampling.readers import read_coderforge

    back, _ = cut_turns(read_coderforge(rows[0]))
    (hist,), = query(home, "SELECT history FROM duel.sampled_turns WHERE turn_id = ?", [rows[0]["turn_id"]])
    (calls,), = query(home, "SELECT tool_calls FROM duel.challenger_answers WHERE turn_id = ?", [rows[0]["turn_id"]])
    assert back[-1].history == json.loads(hist)  # the reader sees the same history
    assert [c["function"] for c in back[-1].reference["tool_calls"]] == [c["function"] for c in json.loads(calls)]
    assert [m["train"] for m in json.loads(rows[0]["messages"])].count(True) == 1


def test_bash_block_export_uses_the_text_protocol_and_respects_the_gate(duel_env, instance):
    import datasets

    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("turns_per_file = 6", "turns_per_file = 40") + "\n[export]\nrequire_gate = false\n")
    materialize(instance, "prompts_40_000")
    home = duel_env["home"]
    accepted, = query(home, "SELECT count(*) FROM duel.duel_verdict WHERE bucket IN ('final', 'refined')")
    assert accepted[0] > 0
    ds = datasets.load_dataset(str(home / "export"), split="train", cache_dir=str(duel_env["tmp"] / "hf"))
    assert len(ds) == accepted[0]
    for row in ds:
        last = row["messages"][-1]
        assert last["role"] == "assistant" and last["tool_calls"] is None and "```bash" in last["content"]
        assert row["messages"][0]["role"] == "system" and row["tools"] is None
    # with the gate required, a REJECTed partition contributes nothing
    cfg.write_text(cfg.read_text().replace("require_gate = false", "require_gate = true"))
    materialize(instance, "prompts_40_000", selection=["exported_buckets"])
    summary = json.loads((home / "report" / "partitions" / "prompts_40_000.json").read_text())
    n = len(sft_jsonl(home / "export"))
    assert n == (accepted[0] if summary["gate"]["verdict"] == "ACCEPT" else 0)


def sft_jsonl(export_dir):
    """Every row of the JSON Lines shards (one per prompt file)."""
    return [json.loads(line) for f in sorted((export_dir / "jsonl").glob("train-*.jsonl"))
            for line in f.read_text().splitlines()]
