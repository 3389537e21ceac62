import json

import pytest

from duel_assets.lib.duel import protocol
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers import read_mini_swe_agent, read_swe_zero
from duel_assets.lib.sampling.trim import trim_history
from duel_assets.lib.turn import BadRecord
from duel_assets_tests.conftest import shared_sample

ROW = {"instance_id": "acme__w-1", "repo": "acme/w", "exit_status": "Submitted", "messages": [
    {"role": "system", "content": "rules"},
    {"role": "user", "content": "Please solve this issue."},
    {"role": "assistant", "content": "THOUGHT: look.\n\n```bash\nls\n```"},
    {"role": "user", "content": "Observation: a.py\n"},
    {"role": "assistant", "content": "two blocks\n```bash\nls\n```\n```bash\npwd\n```"},
    {"role": "user", "content": "Observation: x"},
    {"role": "assistant", "content": "Done.\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"},
]}


def test_own_fixture_turns_and_skips():
    traj = read_swe_zero(ROW)
    assert traj.outcome == "submitted" and traj.protocol == "bash_block"
    turns, skips = cut_turns(traj)
    assert [t.step for t in turns] == [0, 2]
    assert skips == {"reference_multiple_actions": 1}
    assert turns[0].history == ROW["messages"][:2]
    assert protocol.is_submit_command(protocol.check_bash_block(turns[1].reference["content"]).action)
    assert len({t.turn_id for t in turns}) == 2


@pytest.mark.parametrize("row,reason", [
    ({**ROW, "messages": "[{\"role\": "}, "invalid_messages_json"),
    ({**ROW, "messages": []}, "empty_messages"),
    ({**ROW, "messages": 7}, "messages_not_a_list"),
    ({**ROW, "messages": [m for m in ROW["messages"] if m["role"] != "assistant"]}, "no_assistant_step"),
    ({k: v for k, v in ROW.items() if k != "instance_id"}, "missing_instance_id"),
    ({**ROW, "messages": [{"content": "no role"}]}, "invalid_message"),
    ({**ROW, "messages": [{"role": "user", "content": 5}]}, "invalid_content_type"),
    ("not a dict", "row_not_an_object"),
])
def test_bad_rows_raise_a_reason(row, reason):
    with pytest.raises(BadRecord) as e:
        read_swe_zero(row)
    assert e.value.reason == reason


def test_swe_zero_real_rows():
    rows = json.loads(shared_sample("swe_zero", "sample_raw.json").read_text())
    assert len(rows) == 3
    for row in rows:
        traj = read_swe_zero(row)
        assert traj.outcome == "incomplete" and traj.instance_id == "rsteube__carapace-849"
        n_assistant = sum(m["role"] == "assistant" for m in row["messages"])
        turns, skips = cut_turns(traj)
        assert len(turns) + sum(skips.values()) == n_assistant
        for t in turns:
            c = protocol.check_bash_block(t.reference["content"])
            assert c.ok and c.action and not c.thought.startswith("THOUGHT:")
            last = t.history[-1]["content"]
            assert last.startswith("Observation:") if t.step > 0 else last.startswith("Please solve this issue")
    first = cut_turns(read_swe_zero(rows[0]))[0][0]
    assert protocol.check_bash_block(first.reference["content"]).action == 'find . -type f -name "*.py" | head -20'


def test_mini_swe_agent_real_traj_v2_fence():
    msgs = json.loads(shared_sample("mini_swe_agent", "local.traj.json").read_text())
    traj = read_mini_swe_agent({"messages": msgs, "_instance_id": "local"})
    turns, skips = cut_turns(traj)
    assert len(turns) == 2 and not skips
    assert protocol.check_bash_block(turns[0].reference["content"]).action == "echo 'hello world'"
    assert turns[1].history[-1]["content"].startswith("<returncode>0</returncode>")
    assert protocol.is_submit_command(protocol.check_bash_block(turns[1].reference["content"]).action)


def test_trim_history_keeps_task_and_marks_the_cut():
    hist = [{"role": "system", "content": "S"}, {"role": "user", "content": "TASK"}]
    for i in range(20):
        hist += [{"role": "assistant", "content": f"step {i} " + "x" * 100}, {"role": "user", "content": "o" * 5000}]
    out, trimmed = trim_history(hist, max_chars=3000, max_obs_chars=1000)
    assert trimmed and out[0]["content"] == "S" and out[1]["content"] == "TASK"
    assert "earlier steps trimmed" in out[2]["content"]
    assert out[-1] == {"role": "user", "content": out[-1]["content"]} and "elided" in out[-1]["content"]
    assert sum(len(m["content"]) for m in out) < 3300
    assert out[3]["role"] == "assistant"  # whole steps are dropped, never half a step


def test_an_export_document_carries_fields_of_the_turn_type():
    from dataclasses import fields

    from duel_assets.lib.turn import DOCUMENT_FIELDS, OPTIONAL_FIELDS, TURN_FIELDS, Turn

    assert set(DOCUMENT_FIELDS) < {f.name for f in fields(Turn)} == set(TURN_FIELDS) | set(OPTIONAL_FIELDS)
    t = Turn("t1", "i1", None, "src", "t", 0, "bash_block", [{"role": "user", "content": "x"}], {"role": "assistant"})
    assert list(t.to_record()) == list(TURN_FIELDS) and t.to_record()["history_hash"] == t.history_hash
    t.contamination = ["swe-bench-lite:instance_id"]  # the optional fields are in a record only when set
    assert list(t.to_record()) == [*TURN_FIELDS, "contamination"]
