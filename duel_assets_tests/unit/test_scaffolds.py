"""Real files of every scaffold (mini-swe-agent 2.2.7, SWE-agent, SWE-smith) and own small fixtures."""
import json
import shutil
from collections import Counter

import pytest

from duel_assets.lib.duel import protocol
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers import read_mini_swe_agent, read_swe_agent
from duel_assets.lib.sampling.sampler import build_pool
from duel_assets.lib.settings import parse_config
from duel_assets_tests.conftest import FIXTURES, shared_sample

FIX = FIXTURES
MSWEA_227 = ("pr816_deepseek_lite_dev_noparallel__pydicom__pydicom-1256.traj.json",
             "pr816_deepseek_reasoner_dev__pvlib__pvlib-python-1072.traj.json")


def well_formed_bash_calls(raw_messages: list) -> int:
    """Assistant messages of the raw file with exactly one call to bash carrying a string command."""
    n = 0
    for m in raw_messages:
        calls = m.get("tool_calls") or [] if m.get("role") == "assistant" else []
        if len(calls) == 1 and calls[0]["function"]["name"] == "bash":
            args = json.loads(calls[0]["function"]["arguments"])
            n += isinstance(args, dict) and isinstance(args.get("command"), str)
    return n


@pytest.mark.parametrize("name", MSWEA_227)
def test_real_mini_swe_agent_227_every_well_formed_step_is_a_turn(name):
    doc = json.loads(shared_sample("mini_swe_agent", name).read_text())
    assert doc["trajectory_format"] == "mini-swe-agent-1.1" and doc["messages"][-1]["role"] == "exit"
    t = read_mini_swe_agent(doc)
    turns, skips = cut_turns(t)
    expected = well_formed_bash_calls(doc["messages"])
    assert expected == sum(m["role"] == "assistant" for m in doc["messages"]) > 10
    assert len(turns) == expected and skips == {"skipped_role_exit": 1}
    assert t.protocol == "tool_calls" and t.instance_id == doc["instance_id"]
    assert t.source_meta["trajectory_format"] == "mini-swe-agent-1.1" and t.source_meta["exit_status"] == doc["info"]["exit_status"]
    assert all(m["role"] != "exit" for x in turns for m in x.history)
    for x in turns:  # the reference is the file's own call, and what the models see has no reasoning field
        assert protocol.check_tool_calls(x.reference["content"], x.reference["tool_calls"], x.tools).ok
        assert all("reasoning_content" not in m for m in x.history)
    with_reasoning = [m for m in doc["messages"] if m.get("reasoning_content")]
    assert sum(1 for x in turns if x.reference.get("reasoning_content")) == len(with_reasoning)


def test_real_swe_agent_and_swe_smith_files_in_a_folder(tmp_path):
    d = tmp_path / "trajs"
    d.mkdir()
    for part in (("swe_agent", "function_calling_simple.traj"), ("swe_agent", "gpt4__pydicom__pydicom-1458.traj"),
                 ("swe_smith", "pydantic__pydantic.acb0f10f.pr_8316.traj")):
        shutil.copy(shared_sample(*part), d / part[1])
    pool = build_pool(parse_config({"sources": [{"format": "swe_agent", "path": str(d)}]}))
    by_id = Counter(t.instance_id for t in pool.turns)
    # instance id: replay_config / environment for SWE-smith, else the file name (environment "swe_main" is a default name)
    assert set(by_id) == {"function_calling_simple", "gpt4__pydicom__pydicom-1458", "pydantic__pydantic.acb0f10f.pr_8316"}
    assert by_id["pydantic__pydantic.acb0f10f.pr_8316"] == 22 and by_id["function_calling_simple"] == 5
    assert by_id["gpt4__pydicom__pydicom-1458"] == 12 and not pool.skipped
    text = [t for t in pool.turns if t.instance_id.startswith("gpt4")]
    assert all(t.protocol == "bash_block" and protocol.check_bash_block(t.reference["content"]).ok for t in text)
    fc = next(t for t in pool.turns if t.instance_id == "function_calling_simple")
    assert sorted(x["function"]["name"] for x in fc.tools) == ["bash", "edit", "find_file", "open", "submit"]
    assert all(t.outcome == "submitted" for t in pool.turns)


def test_swe_agent_text_style_keeps_the_command_and_refences_it():
    raw = json.loads(shared_sample("swe_agent", "gpt4__pydicom__pydicom-1458.traj").read_text())
    t = read_swe_agent({**raw, "_instance_id": "pydicom__pydicom-1458"})
    actions = [m["action"].strip() for m in raw["history"] if m["role"] == "assistant"]
    turns, _ = cut_turns(t)
    assert [protocol.check_bash_block(x.reference["content"]).action.strip() for x in turns] == actions
    assert t.source_meta["action_style"] == "text" and t.source_meta["environment"] == "swe_main"


def test_own_fixtures_every_style():
    t = read_swe_agent(json.loads((FIX / "swe_agent" / "fc_demo.traj").read_text()))
    assert t.instance_id == "acme__widgets-42" and t.protocol == "tool_calls"  # from replay_config, not "main"
    assert [m["role"] for m in t.messages].count("tool") == 4 and t.messages[3]["tool_call_id"] == "toolu_0"
    turns, skips = cut_turns(t)
    assert [x.reference["tool_calls"][0]["function"]["name"] for x in turns] == ["find_file", "open", "bash", "submit"]
    assert not skips and "submission" not in t.source_meta
    text = read_swe_agent({**json.loads((FIX / "swe_agent" / "acme__widgets-7.traj").read_text()), "_instance_id": "acme__widgets-7"})
    turns, skips = cut_turns(text)
    assert text.instance_id == "acme__widgets-7" and skips == {"reference_no_action": 1}
    assert [protocol.check_bash_block(x.reference["content"]).action for x in turns] == [
        "find_file tokenize.py", "edit 1:1\n    return [t for t in text.split() if t]\nend_of_edit", "submit"]
    assert "```python" in turns[0].reference["content"]  # only the action block is re-fenced
    rows = [json.loads(line) for line in (FIX / "swe_smith_xml.jsonl").read_text().splitlines()]
    x = read_swe_agent(rows[0])
    turns, skips = cut_turns(x)
    assert skips == {"reference_no_action": 1}  # the message with two <function=...> blocks
    view = turns[0].reference["tool_calls"][0]["function"]
    assert view["name"] == "str_replace_editor" and json.loads(view["arguments"])["view_range"] == [1, 5]
    assert turns[1].history[-1] == {"role": "tool", "content": "OBSERVATION:\n     1\tdef tokenize(text):",
                                    "tool_call_id": turns[0].reference["tool_calls"][0]["id"]}
    assert x.hidden["patch"].startswith("diff --git") and x.reward == 1.0 and x.source_meta["model"] == "demo-32b"
    m = read_mini_swe_agent(json.loads((FIX / "mini_swe_agent" / "acme__widgets-42.traj.json").read_text()))
    turns, skips = cut_turns(m)
    assert len(turns) == 3 and skips == {"skipped_role_exit": 1} and m.outcome == "submitted"
    assert turns[1].reference["reasoning_content"].startswith("The filter keeps")


def test_non_chat_roles_are_dropped_steps_not_whole_rows():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "look\n\n```bash\nls\n```"}, {"role": "critic", "content": "meh"},
            {"role": "user", "content": "a.py"}, {"role": "assistant", "content": "done\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"},
            {"role": "exit", "content": ""}]
    t = read_mini_swe_agent({"messages": msgs, "instance_id": "x-1"})
    turns, skips = cut_turns(t)
    assert len(turns) == 2 and skips == {"skipped_role_critic": 1, "skipped_role_exit": 1}


