"""The one row codec: schemas declare their JSON columns; rows and turns round-trip through it."""
import math

import numpy as np
import pandas as pd
import pytest

from duel_assets.lib import tables
from duel_assets.lib.turn import Turn


def test_json_columns_are_declared_once_and_stored_as_text():
    assert {"history", "reference", "tools", "source_meta"} <= tables.JSON_COLUMNS["sampled_turns"]
    assert {"tool_calls", "usage"} <= tables.JSON_COLUMNS["king_answers"]
    assert "leak_evidence" in tables.JSON_COLUMNS["challenger_answers"]
    assert "per_judge" in tables.JSON_COLUMNS["duel_verdict"]
    assert dict(tables.SCHEMAS["sampled_turns"])["history"] == "VARCHAR"  # what DuckDB holds


def test_rows_round_trip_and_already_encoded_text_passes_through():
    calls = [{"id": "c", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}]
    df = tables.frame("king_answers", [{"turn_id": "t1", "tool_calls": calls, "usage": '{"prompt_tokens": 3}',
                                        "format_ok": True, "prompt_tokens": np.int64(3)},
                                       {"turn_id": "t2", "tool_calls": None, "prompt_tokens": float("nan")}], "k")
    assert list(df.columns) == tables.columns("king_answers") and isinstance(df.loc[0, "tool_calls"], str)
    r1, r2 = tables.records("king_answers", df)
    assert r1["tool_calls"] == calls and r1["usage"] == {"prompt_tokens": 3} and r1["prompt_file"] == "k"
    assert r2["tool_calls"] is None and r2["prompt_tokens"] is None and r2["usage"] is None
    assert isinstance(r1["prompt_tokens"], int) and r1["format_ok"] is True


def test_a_json_cell_that_is_not_json_is_a_clear_error():
    df = pd.DataFrame([{"turn_id": "t9", "per_judge": "{oops"}])
    with pytest.raises(tables.RowDecodeError, match=r"duel.duel_verdict.per_judge of turn 't9' is not JSON"):
        tables.records("duel_verdict", df)


def test_turns_round_trip_through_sampled_turns_rows():
    t = Turn("t1", "o__r-1", "o/r", "coderforge", "tr", 2, "tool_calls",
             [{"role": "system", "content": "s"}, {"role": "user", "content": "fix"}],
             {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                                                                 "function": {"name": "bash", "arguments": "{}"}}]},
             tools=[{"type": "function", "function": {"name": "bash"}}], outcome="submitted", trimmed=True)
    df = tables.frame("sampled_turns", tables.turn_rows([t]), "k")
    row = df.iloc[0]
    assert row["history_messages"] == 2 and row["history_chars"] == 4 and isinstance(row["history"], str)
    (back,) = tables.turns_from_frame(df)
    assert back == t
    assert math.isnan(tables.frame("sampled_turns", [{"turn_id": "x"}], "k").loc[0, "reward"])
