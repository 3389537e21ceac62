"""The labelled-duel format: a user-written file with ties and metric labels reads, and every
malformed line is a counted skip that names its line and reason."""
import json

import pytest

from duel_assets.lib.calibration.pairs import CalibrationFileError, LabelledPair, read_set, write_set
from duel_assets.lib.settings import METRICS
from duel_assets_tests.conftest import FIXTURES

FIXTURE = FIXTURES / "calibration_user.jsonl"


def test_user_written_file_reads_with_named_skips():
    s = read_set(FIXTURE)
    assert [p.id for p in s.pairs] == ["u1", "u2", "u3", "u4", "t1", "t2", "t3", "t4"]
    assert {str(x) for x in s.skips} >= {"line 4: invalid_history (expected a non-empty list of messages)", "line 10: missing_b",
                                         "line 12: duplicate_id (u1)"}
    assert [(x.line, x.reason) for x in s.skips] == [(4, "invalid_history"), (5, "invalid_json"), (9, "invalid_label"),
                                                     (10, "missing_b"), (11, "invalid_metric_labels"), (12, "duplicate_id")]
    assert s.skipped_by_reason()["invalid_json"] == 1 and len(s.skips) == 6
    by_id = {p.id: p for p in s.pairs}
    assert by_id["u4"].label == "B" and by_id["t3"].label == "tie"  # "b" and "TIE" are read as B and tie
    assert by_id["u4"].a == {"role": "assistant", "content": "THOUGHT: I will read widgets/tokenize.py next."}  # a string answer
    assert by_id["u2"].metric_labels == {"correctness": "B", "grounding": "tie"}
    assert by_id["u1"].protocol == "bash_block" and by_id["t1"].protocol == "tool_calls"
    # tool-call arguments given as an object are normalised to the wire form (a JSON string)
    assert json.loads(by_id["t2"].a["tool_calls"][0]["function"]["arguments"]) == {"message": "Fixed."}
    assert by_id["t4"].kind is None


def test_header_only_on_the_first_line_and_round_trip(tmp_path):
    pair = LabelledPair(id="p1", history=[{"role": "user", "content": "task"}], a={"role": "assistant", "content": "x"},
                        b={"role": "assistant", "content": "y"}, label="tie", metric_labels={m: "tie" for m in METRICS},
                        kind="tie", meta={"turn_id": "t.s001"})
    f = write_set(tmp_path / "s.jsonl", [pair], {"kinds": {"tie": 1}})
    with open(f, "a") as out:
        out.write(json.dumps({"calibration_set": {"again": True}}) + "\n")
    s = read_set(f)
    assert s.header == {"kinds": {"tie": 1}}
    assert [(x.line, x.reason) for x in s.skips] == [(3, "misplaced_header")]
    (back,) = s.pairs
    assert back.to_record() == pair.to_record() and back.meta == {"turn_id": "t.s001"}


def test_bad_bytes_and_missing_file(tmp_path):
    f = tmp_path / "bad.jsonl"
    good = json.dumps({"history": [{"role": "user", "content": "t"}], "a": "x", "b": "y", "label": "A"})
    f.write_bytes(good.encode() + b"\n\xff\xfe not utf-8\n" + b'{"history": [{"content": "no role"}], "a": "x", "b": "y", "label": "A"}\n')
    s = read_set(f)
    assert [p.id for p in s.pairs] == ["line-1"]  # an id-less pair is named after its line
    assert [(x.line, x.reason) for x in s.skips] == [(2, "non_utf8"), (3, "invalid_history")]
    with pytest.raises(CalibrationFileError, match="does not exist"):
        read_set(tmp_path / "nope.jsonl")
