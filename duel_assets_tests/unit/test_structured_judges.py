"""Structured judge replies: the judge-reply JSON schema is what the parser reads, what each
``judges.structured`` asks for, and the parse rates per judge and per format."""
import json

import pytest

from duel_assets.lib.duel.judging import parse_rates, reply_format, reply_schema
from duel_assets.lib.settings import METRICS, parse_config
from duel_assets.lib.verdict.replies import parse_judge_reply


def test_the_schema_is_what_the_parser_reads():
    schema = reply_schema()
    assert schema["required"] == ["scores", "winner", "reason"] and list(schema["properties"]["scores"]["required"]) == list(METRICS)
    reply = {"scores": {m: {"A": 7, "B": 3} for m in METRICS}, "winner": "A", "reason": "A runs the tests"}
    assert parse_judge_reply(json.dumps(reply)).parsed
    assert reply_format(False) is None
    assert "strict" not in reply_format("auto")["json_schema"] and reply_format(True)["json_schema"]["strict"] is True
    assert parse_config({"judges": {"structured": True}}).judges.structured is True
    with pytest.raises(Exception, match="judges.structured"):
        parse_config({"judges": {"structured": "yes"}})
    rows = [{"judge": "j", "reply_format": "json_schema", "parsed": True}, {"judge": "j", "reply_format": "json_schema", "parsed": False},
            {"judge": "j", "reply_format": None, "parsed": False, "error_kind": "http_400"},
            {"judge": "j", "parsed": False, "error_kind": "skipped"}]
    assert parse_rates(rows) == {"j": {"json_schema": {"judged": 2, "parsed": 1, "rate": 0.5},
                                       "no reply": {"judged": 1, "parsed": 0, "rate": 0.0}}}
