"""The review page's logic without a web server: turn figures, filters, the queue, sorting, the diff,
leak highlighting, folding, label records (read back by the calibration reader) and the labels file."""
import os
from datetime import datetime, timezone

import pytest

from duel_assets.lib.calibration.pairs import read_set
from duel_assets.lib.review import text, turns
from duel_assets.lib.review.labels import Label, LabelRefused, LabelsFile, record
from duel_assets.lib.review.partitions import overview
from duel_assets.lib.review.reading import Reader
from duel_assets.lib.review.running import announce, is_loopback, review_base, running_url
from duel_assets.lib.settings import METRICS, ChainConfig, Paths
from duel_assets.lib.verdict.replies import CHALLENGER_FIRST, KING_FIRST
from duel_assets.lib.warehouse import Warehouse
from duel_assets_tests.review_fixture import HOSTILE, write_partition

W = {m: 1.0 for m in METRICS}
CUT = {"final": 80.0, "refined": 66.0}


def judgement(tid, judge, order, c, o, parsed=True, kind=None):
    return {"turn_id": tid, "judge": judge, "order": order, "parsed": parsed, "error_kind": kind,
            **{f"{m}_challenger": c for m in METRICS}, **{f"{m}_opponent": o for m in METRICS}}


def verdict(tid, score, per_judge, **kw):
    return {"turn_id": tid, "score": score, "bucket": kw.pop("bucket", "defeat"), "parsed": kw.pop("parsed", True),
            "per_judge": per_judge, **kw}


def test_disagreement_near_threshold_filters_and_the_queue_order():
    ts = [{"turn_id": t} for t in ("agree", "split", "flip", "near", "leak", "unparsed", "excluded", "nothing")]
    vs = [verdict("agree", 90.0, {"j1": 90.0, "j2": 90.0}, bucket="final"),
          verdict("split", 60.0, {"j1": 90.0, "j2": 30.0}),
          verdict("flip", 40.0, {"j1": 40.0}),
          verdict("near", 78.0, {"j1": 78.0}, bucket="refined"),
          verdict("leak", 20.0, {"j1": 20.0}, leak_suspect=True),
          verdict("unparsed", None, {}, parsed=False, bucket=None, unparsed_reason="0/1 judges parsed"),
          {"turn_id": "excluded", "score": None, "bucket": None, "parsed": None, "excluded_reason": "no_hidden_info"}]
    js = [judgement("flip", "j1", KING_FIRST, 7, 5), judgement("flip", "j1", CHALLENGER_FIRST, 4, 6),
          judgement("agree", "j1", KING_FIRST, 8, 5), judgement("agree", "j1", CHALLENGER_FIRST, 8, 5),
          judgement("unparsed", "j1", KING_FIRST, None, None, parsed=False),
          judgement("near", "j2", KING_FIRST, None, None, parsed=False, kind="skipped")]  # not asked: no failure
    views = turns.turn_views(ts, vs, js, CUT, W, near=5.0, labelled={"leak"})
    by = {v.turn_id: v for v in views}
    assert by["split"].split and by["split"].spread == 60.0 and not by["split"].flips
    assert by["flip"].flips == ["j1"] and by["flip"].disagree and not by["agree"].disagree
    assert by["near"].near == 2.0 and by["agree"].near is None and by["split"].near is None
    assert by["unparsed"].parse_failures == 1 and by["near"].parse_failures == 0
    assert [v.turn_id for v in views if turns.matches(v, "disagree")] == ["split", "flip"]
    assert [v.turn_id for v in views if turns.matches(v, "near")] == ["near"]
    assert [v.turn_id for v in views if turns.matches(v, "leak")] == ["leak"]
    assert [v.turn_id for v in views if turns.matches(v, "parse_fail")] == ["unparsed"]
    assert [v.turn_id for v in views if turns.matches(v, "excluded")] == ["excluded"]
    assert [v.turn_id for v in views if turns.matches(v, None, "parse-fail")] == ["unparsed"]
    assert [v.turn_id for v in views if turns.matches(v, "disagree", "defeat")] == ["split", "flip"]
    # the queue: disagreements, then near a threshold, then the rest, unparsed last; labelled, excluded and
    # turns without a verdict are not in it
    assert [v.turn_id for v in turns.queue(views)] == ["split", "flip", "near", "agree", "unparsed"]
    assert turns.next_after(views, "split").turn_id == "flip" and turns.next_after(views, None).turn_id == "split"
    assert turns.counts(views) == {"disagree": 2, "near": 1, "leak": 1, "parse_fail": 1, "excluded": 1}
    scored = [v.turn_id for v in turns.sort_views(views, "score", descending=True)]
    assert scored[:5] == ["agree", "near", "split", "flip", "leak"]  # without a score: last either way
    assert set(scored[5:]) == {"unparsed", "excluded", "nothing"}
    with pytest.raises(ValueError, match="allowed: queue, turn"):
        turns.sort_views(views, "nope")


def test_a_patch_becomes_classed_lines_and_evidence_is_marked_not_markup():
    patch = ("diff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n ctx\n-old\n"
             "+new <script>\n--- not a header inside a hunk\n\\ No newline at end of file\n")
    lines, hidden = text.diff_lines(patch)
    assert [c for c, _ in lines] == ["file", "file", "file", "file", "hunk", "ctx", "del", "add", "del", "meta"]
    assert lines[7] == ("add", "+new <script>") and hidden == 0  # text as given: the template escapes it
    assert text.diff_lines("x" * 50, shown=10)[1] == 40
    pieces = text.marked("cat src/a.py && grep clamp_value src/a.py", ["src/a.py", "clamp_value", ""])
    assert [p for p, hit in pieces if hit] == ["src/a.py", "clamp_value", "src/a.py"]
    assert "".join(p for p, _ in pieces) == "cat src/a.py && grep clamp_value src/a.py"
    assert text.marked("a.b", ["a.b", "."]) == [("a.b", True)]  # terms are literal, longest first
    assert text.marked("", ["x"]) == [] and text.marked("abc", None) == [("abc", False)]


def test_long_text_is_folded_and_clipped():
    one_line = "A" * 1_000_000
    c = text.clip(one_line)
    assert (len(c.head), len(c.rest), c.hidden, c.total) == (text.FOLD_CHARS, text.SHOWN_CHARS - text.FOLD_CHARS,
                                                            1_000_000 - text.SHOWN_CHARS, 1_000_000)
    many = "\n".join(f"line {i}" for i in range(100))
    c = text.clip(many)
    assert c.head.count("\n") == text.FOLD_LINES and c.folded and c.head + c.rest == many
    assert not text.clip("short").folded and text.clip(None).total == 0
    assert not text.clip("x" * (text.FOLD_CHARS + 100)).folded  # a fold is worth opening or it is not made
    calls = text.tool_calls([{"id": "c", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}, "junk"])
    assert calls == [{"name": "bash", "arguments": '{\n  "command": "ls"\n}', "id": "c"}]


@pytest.fixture
def warehouse(tmp_path):
    home = tmp_path / "home"
    paths = Paths(home)
    wh = Warehouse(home / "warehouse.duckdb")
    write_partition(wh, paths, "hostile", 4, hostile=True)
    write_partition(wh, paths, "plain", 10)
    return wh, paths


def test_label_records_are_pairs_calibrate_reads_with_who_when_and_positions(warehouse, tmp_path):
    wh, paths = warehouse
    reader = Reader(wh)
    rows, _ = reader.duel("plain", "t001")
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    rec = record("plain", rows, Label("B", "challenger", "grounding"), "alice", at)
    assert rec["a"]["content"] == rows.challenger["content"] and rec["b"]["content"] == rows.king["content"]
    assert rec["positions"] == {"A": "challenger", "B": "king"} and rec["better"] == "king"
    assert (rec["reviewer"], rec["labelled_at"], rec["id"]) == ("alice", "2025-01-02T03:04:05Z", "plain/t001")
    assert rec["metric_labels"] == {"grounding": "B"} and rec["pr_record"]["changed_files"] == ["src/mod1.py"]
    labels = LabelsFile(tmp_path / "labels" / "alice.jsonl")
    assert labels.append(rec) and not labels.append(rec)  # a turn once per file
    rows0, _ = reader.duel("plain", "t000")  # tool-calling: its tool calls and tools travel with it
    assert labels.append(record("plain", rows0, Label("tie", "king"), "alice", at))
    assert labels.labelled("plain") == {"t001", "t000"} and labels.count() == 2
    got = read_set(labels.path)
    assert not got.skips and [p.id for p in got.pairs] == ["plain/t001", "plain/t000"]
    p0 = got.pairs[1]
    assert p0.label == "tie" and p0.protocol == "tool_calls" and p0.a["tool_calls"][0]["function"]["name"] == "bash"
    assert p0.meta["positions"] == {"A": "king", "B": "challenger"} and p0.meta["reviewer"] == "alice"
    assert oct(os.stat(labels.path).st_mode & 0o777) == "0o600"
    with pytest.raises(LabelRefused, match="label: got 'C'"):
        Label("C", "king")
    with pytest.raises(LabelRefused, match="allowed: challenger or king"):
        record("plain", rows, Label("A", "reference"), "alice")
    # the 1 MB observation makes a history longer than a calibration pair may be: refused, nothing written
    big, _ = reader.duel("hostile", "t000")
    with pytest.raises(LabelRefused, match="history_too_long"):
        record("hostile", big, Label("A", "king"), "alice")
    # hostile text survives as data
    small, _ = reader.duel("hostile", "t001")
    rec = record("hostile", small, Label("A", "king"), "alice")
    assert HOSTILE in rec["a"]["content"] and HOSTILE in rec["history"][1]["content"]


def test_an_unfinished_last_line_costs_only_itself(tmp_path, warehouse):
    wh, _ = warehouse
    path = tmp_path / "l.jsonl"
    path.write_text('{"id": "x/y", "history": [')  # a crash in the middle of a write
    rows, _ = Reader(wh).duel("plain", "t003")
    labels = LabelsFile(path)
    assert labels.append(record("plain", rows, Label("A", "king"), "bob"))
    got = read_set(path)
    assert [p.id for p in got.pairs] == ["plain/t003"] and [s.reason for s in got.skips] == ["invalid_json"]


def test_partition_rows_carry_gate_counts_agreement_and_cost(warehouse):
    wh, paths = warehouse
    from duel_assets.lib.export.summary import read_summaries

    figures = Reader(wh).partition_figures()
    rows = overview(figures, read_summaries(paths, list(figures)), {"model-king": {"prompt": 1.0}}, {"plain": 3})
    plain = next(r for r in rows if r.key == "plain")
    assert plain.turns == 10 and sum(plain.verdicts.values()) == 10 and plain.labelled == 3
    assert plain.gate in ("ACCEPT", "REJECT") and plain.gate_line.startswith(plain.gate + ": ")
    # turns i % 5 == 1 split the panel; a turn whose judge-b did not parse has one judge's score
    assert plain.panel_turns == 10 and plain.agreed_turns == 8 and plain.agreement == 0.8
    assert plain.cost_usd == pytest.approx(10 * 800 / 1e6 + 10 * 200 * 1.0 / 1e6)  # prompt price, cached at it too
    assert plain.tokens == 10 * 2 * 1080 + 40 * 3120


def test_where_a_running_page_is_found(tmp_path):
    assert running_url(tmp_path) is None and review_base(tmp_path, "http://r:1/") == "http://r:1"
    announce(tmp_path, "http://127.0.0.1:9/")
    assert running_url(tmp_path) == "http://127.0.0.1:9" == review_base(tmp_path, None)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    cfg = ChainConfig()
    assert cfg.review.url is None
