"""Summaries, manifests, report and SFT shards on real files: what one partition writes, what the
all-partitions report reads, and that the export stays one loadable dataset."""
import json

import pytest

from duel_assets.lib.export.documents import write_documents
from duel_assets.lib.export.partition import export_partition
from duel_assets.lib.export.paths import partition_files
from duel_assets.lib.export.report import overall_gate, render_report, write_report
from duel_assets.lib.export.summary import read_manifest, read_summaries, read_summary, read_turns, write_partition_summary
from duel_assets.lib.settings import METRICS, GateConfig, Paths, parse_config
from duel_assets.lib.verdict.gate import gate
from duel_assets.lib.verdict.verdicts import partition_gate

GATE = GateConfig(resamples=200)
NO_ONE = {"standin": False, "served_models": {}, "configured_models": {}}


def config(**export):
    return parse_config({"export": export, "gate": {"resamples": GATE.resamples}})


def verdicts(key: str, scores: list, excluded: dict[int, str] | None = None) -> list[dict]:
    out = []
    for i, s in enumerate(scores):
        reason = (excluded or {}).get(i)
        bucket = None if s is None or reason else "final" if s >= 80 else "refined" if s >= 66 else "defeat"
        out.append({"turn_id": f"{key}-t{i}", "score": None if reason else s, "bucket": bucket, "excluded_reason": reason,
                    **{f"{m}_win": 0.5 for m in METRICS}})
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
                "tools": [{"type": "function", "function": {"name": "execute_bash", "parameters": {"type": "object"}}}] if tools else None}
        chal = {"content": "run ls", "tool_calls": call} if tools else {"content": "THOUGHT: look\n\n```bash\nls\n```", "tool_calls": None}
        doc = {"prompt_file": key, "turn_id": r["turn_id"], "bucket": r["bucket"], "score": r["score"], "turn": turn, "challenger": chal}
        out.append({"turn_id": r["turn_id"], "bucket": r["bucket"], "score": r["score"], "document": doc})
    return out


def materialize(paths: Paths, key: str, scores: list, tools: bool = False, require_gate: bool = False,
                excluded: dict | None = None, **export) -> dict:
    """What duel_verdict and exported_buckets write for one partition (each its own files)."""
    rows = verdicts(key, scores, excluded)
    g = partition_gate(rows, GATE)
    write_partition_summary(paths, key, g, rows, NO_ONE)
    done = export_partition(paths, key, records(key, rows, tools), config(require_gate=require_gate, **export).export, g.verdict)
    assert [r["turn_id"] for r in done.rows] == [r["turn_id"] for r in rows if r["bucket"]]
    return done.sft


def test_partition_shards_hold_its_own_rows_and_load_as_one_dataset(tmp_path):
    import datasets

    paths = Paths(tmp_path)
    a = materialize(paths, "p_4_000", [90, 70, 10, None], tools=True)
    b = materialize(paths, "p_4_001", [85, 85, 50, 95], tools=False)
    assert (a["rows"], b["rows"]) == (2, 3)
    assert a["by_protocol"] == {"tool_calls": 2} and b["by_bucket"] == {"final": 3}
    assert not paths.report.exists() and not (paths.export_dir / "README.md").exists()  # not the partitions' files
    report = write_report(paths, ["p_4_000", "p_4_001"], config(require_gate=False), 2)
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


def test_gate_reject_unregistered_layout_change_and_legacy_shards_leave_the_export(tmp_path):
    paths = Paths(tmp_path)
    materialize(paths, "p_4_000", [90, 90, 90, 90])  # clear win: ACCEPT
    rej = materialize(paths, "p_4_001", [10, 20, 95, 5], require_gate=True)  # clear loss: REJECT
    materialize(paths, "p_4_002", [90, 95, 85, 99])
    materialize(paths, "p_4_003", [90, 95, 85, 99], layout="source")  # written before a layout change
    assert rej["rows"] == 0 and rej["excluded"] == "gate REJECT"
    assert not partition_files(paths, "p_4_001").parquet.exists()
    legacy = paths.export_dir / "jsonl" / "train.jsonl"
    legacy.write_text('{"old": 1}\n')
    tmp_shard = paths.export_dir / "data" / ".train-p_9_000.parquet.tmp"  # another run mid-write
    tmp_shard.write_bytes(b"partial")
    # p_4_002 is no longer registered
    sft = write_report(paths, ["p_4_000", "p_4_001", "p_4_003"], config(require_gate=True), 2).sft
    assert sft["partitions_included"] == ["p_4_000"]
    assert sft["partitions_excluded"]["p_4_001"] == "gate REJECT" and "layout 'source'" in sft["partitions_excluded"]["p_4_003"]
    names = sorted(f.name for f in (paths.export_dir / "data").iterdir())
    assert names == [".train-p_9_000.parquet.tmp", "train-p_4_000.parquet"]
    assert not legacy.exists() and (paths.export_dir / "jsonl" / "train-p_4_000.jsonl").exists()


def test_re_judging_rewrites_only_the_verdict_files(tmp_path):
    paths = Paths(tmp_path)
    materialize(paths, "p_2_000", [90, 90])
    manifest = partition_files(paths, "p_2_000").manifest.read_bytes()
    rows = verdicts("p_2_000", [95, 95])
    write_partition_summary(paths, "p_2_000", gate([95, 95], GATE), rows, NO_ONE)  # duel_verdict again
    assert read_summary(paths, "p_2_000")["scores"] == [95, 95]
    assert partition_files(paths, "p_2_000").manifest.read_bytes() == manifest  # exported_buckets' file, untouched
    assert read_manifest(paths, "p_2_000")["sft"]["rows"] == 2 and partition_files(paths, "p_2_000").parquet.exists()


def test_report_turn_table_stops_at_its_cap_and_reads_only_what_it_shows(tmp_path):
    paths = Paths(tmp_path)
    keys = [f"p_4_{i:03d}" for i in range(5)]
    for k in keys:
        materialize(paths, k, [90, 70, 30, None])
    summaries = read_summaries(paths, keys)
    asked = []

    def turns_of(k):
        asked.append(k)
        return read_turns(paths, k)

    text = render_report(summaries, overall_gate(summaries, GATE), 2, turns_of=turns_of,
                         files_of=lambda k: read_manifest(paths, k)["files"], max_turns=6, home=paths.home)
    table = [line for line in text.splitlines() if line.startswith("| p_4_") and "-t" in line]
    assert len(table) == 6 and asked == keys[:2]
    assert "14 more turns not listed (the table stops at 6)" in text
    assert "| 5 | 20 | 15 | 5 | 0 | 5 | 5 | 5 |" in text  # partitions, turns, parsed, parse-fail, excluded, buckets
    assert "final/p_4_000/p_4_000-t0.json" in text  # a turn's exported file is in its row


def test_excluded_turns_are_counted_under_their_reason_never_as_parse_fail(tmp_path):
    paths = Paths(tmp_path)
    sft = materialize(paths, "p_5_000", [90, 90, 90, 90, None, 90], excluded={1: "no_hidden_info", 2: "king_malformed"})
    summary = read_summary(paths, "p_5_000")
    assert summary["excluded"] == {"no_hidden_info": 1, "king_malformed": 1}
    assert summary["buckets"] == {"final": 3, "parse-fail": 1} and len(summary["scores"]) == 4
    g = summary["gate"]
    assert (g["turns"], g["parsed_turns"], g["parsed_fraction"]) == (4, 3, 0.75)  # not 3/6
    assert sft["rows"] == 3 and not any(p.name.startswith("p_5_000-t1") for p in paths.home.rglob("*.json"))
    text = write_report(paths, ["p_5_000"], config(), 2).text
    assert "| 1 | 6 | 3 | 1 | 2 | 3 | 0 | 0 |" in text  # 1 parse-fail, 2 excluded
    assert "excluded turns (in neither the parsed fraction nor the margins): king_malformed 1, no_hidden_info 1" in text
    assert "| p_5_000 | p_5_000-t1 | - | excluded: no_hidden_info |" in text


def test_documents_of_a_partition_are_replaced_in_its_own_folder(tmp_path):
    paths = Paths(tmp_path)
    rows = verdicts("p", [90, 50])
    first = write_documents(paths, "p", records("p", rows, False))
    other = write_documents(paths, "p__q", records("p__q", verdicts("p__q", [95]), False))
    again = write_documents(paths, "p", records("p", verdicts("p", [95]), False))
    assert [r["path"] for r in again] == [first[0]["path"]]
    assert not (tmp_path / "defeat" / "p" / "p-t1.json").exists()  # its own stale file is gone
    assert all(json.loads(open(r["path"]).read())["prompt_file"] == "p__q" for r in other)  # the other's stay


@pytest.mark.parametrize("keys", [["p_1_000"], ["p_1_000", "never_ran"]])
def test_read_summaries_returns_partitions_that_have_one(tmp_path, keys):
    paths = Paths(tmp_path)
    materialize(paths, "p_1_000", [90])
    assert list(read_summaries(paths, keys)) == ["p_1_000"]


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path):
    from duel_assets.lib.system.files import read_json, replacing, write_json_atomic

    target = tmp_path / "d" / "x.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("disk full")
    assert read_json(target) == {"v": 1} and sorted(p.name for p in target.parent.iterdir()) == ["x.json"]
    assert read_json(tmp_path / "missing.json", []) == []
