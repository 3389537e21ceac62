"""Summaries, report and SFT shards on real files: what one partition writes, what the all-partitions
figures read, and that the export stays one loadable dataset."""
import json

import pytest

from duel_assets.lib import export
from duel_assets.lib.scoring import gate
from duel_assets.lib.settings import METRICS, GateConfig, Paths, parse_config

GATE = GateConfig(resamples=200)


def verdicts(key: str, scores: list[float | None]) -> list[dict]:
    out = []
    for i, s in enumerate(scores):
        bucket = None if s is None else "final" if s >= 80 else "refined" if s >= 66 else "defeat"
        out.append({"turn_id": f"{key}-t{i}", "score": s, "bucket": bucket, **{f"{m}_win": 0.5 for m in METRICS}})
    return out


def records(key: str, rows: list[dict], tools: bool) -> list[dict]:
    """Export documents: a tool-calling turn or a bash-block turn per row."""
    out = []
    for r in rows:
        if r["bucket"] is None:
            continue
        call = [{"id": "c1", "type": "function", "function": {"name": "execute_bash", "arguments": '{"command": "ls"}'}}]
        turn = {"instance_id": "o__r-1", "source": "coderforge" if tools else "swe_zero",
                "protocol": "tool_calls" if tools else "bash_block",
                "history": [{"role": "system", "content": "rules"}, {"role": "user", "content": "fix it"}],
                "tools": [{"type": "function", "function": {"name": "execute_bash"}}] if tools else None}
        chal = {"content": "run ls", "tool_calls": call} if tools else {"content": "THOUGHT: look\n\n```bash\nls\n```", "tool_calls": None}
        doc = {"prompt_file": key, "turn_id": r["turn_id"], "bucket": r["bucket"], "score": r["score"], "turn": turn, "challenger": chal}
        out.append({"turn_id": r["turn_id"], "bucket": r["bucket"], "score": r["score"], "document": doc})
    return out


def materialize(paths: Paths, key: str, scores: list, tools: bool = False, require_gate: bool = False) -> dict:
    """What duel_verdict and exported_buckets do with one partition; every partition so far is registered."""
    rows = verdicts(key, scores)
    export.write_partition_summary(paths, key, gate([r["score"] for r in rows], GATE), rows)
    cfg = parse_config({"export": {"require_gate": require_gate}, "gate": {"resamples": GATE.resamples}})
    registered = list(export.read_summaries(paths, None))
    done = export.export_partition(paths, key, records(key, rows, tools), registered, cfg, 2)
    assert [r["turn_id"] for r in done.rows] == [r["turn_id"] for r in rows if r["bucket"]]
    return done.sft


def test_partition_shards_hold_its_own_rows_and_load_as_one_dataset(tmp_path):
    import datasets

    paths = Paths(tmp_path)
    a = materialize(paths, "p_4_000", [90, 70, 10, None], tools=True)
    b = materialize(paths, "p_4_001", [85, 85, 50, 95], tools=False)
    assert (a["rows"], b["rows"]) == (2, 3)
    assert a["by_protocol"] == {"tool_calls": 2} and b["by_bucket"] == {"final": 3}
    report = export.write_report(paths, ["p_4_000", "p_4_001"], GATE, 2, ["final", "refined"], False)
    overall, sft = report.overall, report.sft
    assert report.text == paths.report.read_text()
    assert sft["rows"] == 5 and sft["partitions_included"] == ["p_4_000", "p_4_001"]
    card = (paths.export_dir / "README.md").read_text()
    assert "5 training turns" in card and "| coderforge | 2 |" in card and "| swe_zero | 3 |" in card
    # one schema across shards: a shard without any tool call still loads beside one with them
    ds = datasets.load_dataset(str(paths.export_dir), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 5 and sorted(set(ds["prompt_file"])) == ["p_4_000", "p_4_001"]
    tool_rows = [r for r in ds if r["protocol"] == "tool_calls"]
    assert tool_rows[0]["messages"][-1]["tool_calls"][0]["function"]["name"] == "execute_bash"
    jsonl = [json.loads(line) for f in (paths.export_dir / "jsonl").glob("train-*.jsonl") for line in f.read_text().splitlines()]
    assert len(jsonl) == 5
    # the overall gate is computed from the summaries' scores: the same as gating every score at once
    assert overall.to_dict() == gate([90, 70, 10, None, 85, 85, 50, 95], GATE).to_dict()


def test_gate_reject_unregistered_and_legacy_shards_leave_the_export(tmp_path):
    paths = Paths(tmp_path)
    materialize(paths, "p_4_000", [90, 90, 90, 90])  # clear win: ACCEPT
    rej = materialize(paths, "p_4_001", [10, 20, 95, 5], require_gate=True)  # clear loss: REJECT
    materialize(paths, "p_4_002", [90, 95, 85, 99])
    assert rej == {"rows": 0, "excluded": "gate REJECT", "by_source": {}, "by_bucket": {}, "by_protocol": {}}
    assert not any(p.exists() for p in export.sft_shards(paths, "p_4_001"))
    legacy = paths.export_dir / "jsonl" / "train.jsonl"
    legacy.write_text('{"old": 1}\n')
    tmp_shard = paths.export_dir / "data" / ".train-p_9_000.parquet.tmp"  # another run mid-write
    tmp_shard.write_bytes(b"partial")
    # p_4_002 is no longer registered
    sft = export.write_report(paths, ["p_4_000", "p_4_001"], GATE, 2, ["final", "refined"], True).sft
    assert sft["partitions_included"] == ["p_4_000"] and sft["partitions_excluded"] == {"p_4_001": "gate REJECT"}
    names = sorted(f.name for f in (paths.export_dir / "data").iterdir())
    assert names == [".train-p_9_000.parquet.tmp", "train-p_4_000.parquet"]
    assert not legacy.exists() and (paths.export_dir / "jsonl" / "train-p_4_000.jsonl").exists()


def test_re_judging_keeps_the_shards_described_until_they_are_rewritten(tmp_path):
    paths = Paths(tmp_path)
    materialize(paths, "p_2_000", [90, 90])
    rows = verdicts("p_2_000", [95, 95])
    export.write_partition_summary(paths, "p_2_000", gate([95, 95], GATE), rows)  # duel_verdict again
    summary = export.read_summary(paths, "p_2_000")
    assert summary["scores"] == [95, 95] and summary["sft"]["rows"] == 2
    assert export.sft_shards(paths, "p_2_000")[0].exists()


def test_report_turn_table_stops_at_its_cap_and_reads_only_what_it_shows(tmp_path):
    paths = Paths(tmp_path)
    keys = [f"p_4_{i:03d}" for i in range(5)]
    for k in keys:
        materialize(paths, k, [90, 70, 30, None])
    summaries = export.read_summaries(paths, keys)
    asked = []

    def turns_of(k):
        asked.append(k)
        return export.read_turns(paths, k)

    text = export.render_report(summaries, export.overall_gate(summaries, GATE), 2, turns_of=turns_of, max_turns=6)
    table = [line for line in text.splitlines() if line.startswith("| p_4_") and "-t" in line]
    assert len(table) == 6 and asked == keys[:2]
    assert "14 more turns not listed (the table stops at 6)" in text
    assert "| 5 | 20 | 15 | 5 | 5 | 5 | 5 |" in text  # partitions, turns, parsed, parse-fail, buckets
    # a turn's exported file is in its row
    assert "final/p_4_000__p_4_000-t0.json" in text


@pytest.mark.parametrize("keys", [None, ["p_1_000"]])
def test_read_summaries_skips_turn_detail_files(tmp_path, keys):
    paths = Paths(tmp_path)
    materialize(paths, "p_1_000", [90])
    assert list(export.read_summaries(paths, keys)) == ["p_1_000"]


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path):
    from duel_assets.lib.files import read_json, replacing, write_json_atomic

    target = tmp_path / "d" / "x.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("disk full")
    assert read_json(target) == {"v": 1} and sorted(p.name for p in target.parent.iterdir()) == ["x.json"]
    assert read_json(tmp_path / "missing.json", []) == []
