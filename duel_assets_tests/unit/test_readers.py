"""Readers of the tool-calling scaffolds, on own fixtures and (when present) real rows."""
import json
from collections import Counter

import pytest

from duel_assets.lib.duel import protocol
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers import (
    read_coderforge,
    read_mini_swe_agent,
    read_sera,
    read_sera_rectified,
    split_parallel_calls,
)
from duel_assets.lib.sampling.readers.provenance import META_MAX_CHARS, source_meta
from duel_assets.lib.sampling.sampler import build_pool
from duel_assets.lib.settings import parse_config
from duel_assets.lib.turn import BadRecord
from duel_assets_tests.conftest import FIXTURES, shared_sample

FIX = FIXTURES


def rows(name):
    return [json.loads(line) for line in (FIX / name).read_text().splitlines()]


def names(turn_or_msg):
    return [c["function"]["name"] for c in turn_or_msg.get("tool_calls") or []]


def test_coderforge_fixture_json_strings_parallel_calls_and_finish():
    r = rows("coderforge_sample.jsonl")[0]
    assert isinstance(r["messages"], str) and isinstance(r["tools"], str)
    t = read_coderforge(r)
    assert t.instance_id == "acme__widgets-42" and t.traj_id == "acme__widgets-42_run1"
    assert t.protocol == "tool_calls" and t.outcome == "submitted" and t.reward == 1.0
    assert [x["function"]["name"] for x in t.tools] == ["execute_bash", "str_replace_editor", "think", "finish"]
    turns, skips = cut_turns(t)
    # think + execute_bash in one message became two steps, each followed by its own reply
    assert [names(x.reference) for x in turns] == [["execute_bash"], ["think"], ["execute_bash"], ["str_replace_editor"], ["finish"]]
    assert turns[2].reference["content"] == "" and turns[1].reference["content"].startswith("I will note my plan")
    assert turns[2].history[-1] == {"role": "tool", "content": "Your thought has been logged.", "tool_call_id": "c2"}
    assert turns[3].history[-1]["tool_call_id"] == "c3"
    for x in turns:
        c = protocol.check_tool_calls(x.reference["content"], x.reference["tool_calls"], x.tools)
        assert c.ok, c.reason
    assert read_coderforge(rows("coderforge_sample.jsonl")[1]).outcome == "incomplete"


def test_sera_rectified_fixture_roles_and_tools_from_system():
    t = read_sera_rectified(rows("sera_rectified_sample.jsonl")[0])
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert t.messages[2]["content"] == "<think>Find the code first.</think>" and names(t.messages[2]) == ["bash"]
    assert json.loads(t.messages[2]["tool_calls"][0]["function"]["arguments"]) == {"command": "grep -rn tokenize /testbed"}
    assert t.messages[3] == {"role": "tool", "content": "/testbed/widgets/tokenize.py:1:tokenize", "tool_call_id": t.messages[2]["tool_calls"][0]["id"]}
    assert [x["function"]["name"] for x in t.tools] == ["bash"] and t.outcome == "submitted"
    turns, skips = cut_turns(t)
    assert len(turns) == 2 and skips == {"reference_no_action": 1}  # the <answer> turn has no action
    r, a = protocol.split_reasoning(turns[0].reference["content"])
    assert r == "Find the code first." and a == ""


def test_mini_swe_agent_v2_tool_calling():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "look", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}]},
            {"role": "tool", "content": "x.py", "tool_call_id": "a"},
            {"role": "assistant", "content": "done", "tool_calls": [{"id": "b", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\"}"}}]}]
    t = read_mini_swe_agent({"messages": msgs, "info": {"exit_status": "Submitted"}, "_instance_id": "x-1"})
    assert t.protocol == "tool_calls" and [x["function"]["name"] for x in t.tools] == ["bash"] and t.outcome == "submitted"
    assert len(cut_turns(t)[0]) == 2


def test_split_parallel_calls_keeps_unmatched_replies():
    msgs = [{"role": "assistant", "content": "t", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "content": "r2", "tool_call_id": "2"}, {"role": "tool", "content": "r1", "tool_call_id": "1"}]
    out = split_parallel_calls(msgs)
    assert [(m["role"], m.get("tool_call_id"), m["content"]) for m in out] == [
        ("assistant", None, "t"), ("tool", "1", "r1"), ("assistant", None, ""), ("tool", "2", "r2")]


def test_real_openhands_rows():
    for f in ("swe_gym_openhands_sampled_trajectories.3rows_resolved.json", "swe_gym_openhands_sampled_trajectories.3rows_unresolved.json"):
        for r in json.loads(shared_sample("openhands", f).read_text()):
            t = read_coderforge(r)
            n_calls = sum(len(m.get("tool_calls") or []) for m in r["messages"] if m["role"] == "assistant")
            assert sum(1 for m in t.messages if m.get("tool_calls")) == n_calls  # one call per step after splitting
            assert sum(1 for m in t.messages if m["role"] == "tool") == sum(1 for m in r["messages"] if m["role"] == "tool")
            turns, skips = cut_turns(t)
            assert len(turns) == n_calls
            text_only = sum(1 for m in r["messages"] if m["role"] == "assistant" and not m.get("tool_calls"))
            assert skips == ({"reference_no_action": text_only} if text_only else {})
            assert t.outcome == ("submitted" if r["resolved"] else "incomplete")
            assert all(m.get("tool_call_id") for m in t.messages if m["role"] == "tool")


def test_real_sera_rows_double_submit_and_thoughts():
    for r in json.loads(shared_sample("sera", "sample_raw.json").read_text()):
        raw = json.loads(r["messages"])
        t = read_sera(r)
        turns, skips = cut_turns(t)
        assert len(turns) == sum(1 for m in raw if m["role"] == "assistant") and not skips
        submits = [x for x in turns if names(x.reference) == ["submit"]]
        assert len(submits) == 2 and turns[-1] is submits[-1]  # review step, then the final submit
        first_obs = next(m for m in t.messages if m["role"] == "tool")
        assert first_obs["content"].startswith("OBSERVATION:") and first_obs["tool_call_id"].startswith("call_")
        reasoning, visible = protocol.split_reasoning(turns[1].reference["content"])
        assert reasoning and "<think>" not in visible
        assert t.outcome == "submitted"


@pytest.mark.parametrize("reader,row,reason", [
    (read_coderforge, {"trajectory_id": "a_run1", "messages": "[{\"role\":"}, "invalid_messages_json"),
    (read_coderforge, {"messages": "[]"}, "missing_instance_id"),
    (read_coderforge, {"trajectory_id": "a_run1", "messages": "[{\"role\": \"user\", \"content\": \"hi\"}]"}, "no_assistant_step"),
    (read_coderforge, {"trajectory_id": "a_run1", "messages": "[{\"role\": \"assistant\", \"content\": \"x\"}]", "tools": "{oops"}, "invalid_tools_json"),
    (read_coderforge, {"trajectory_id": "a_run1", "messages": "[{\"role\": \"assistant\", \"content\": \"x\"}]", "reward": "high"}, "invalid_reward"),
    (read_coderforge, {"trajectory_id": "a_run1", "messages": "[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"function\": {\"arguments\": \"{}\"}}]}]"}, "invalid_tool_call"),
    (read_sera, {"instance_id": "x_1", "messages": 5}, "messages_not_a_list"),
    (read_sera, {"messages": "[]"}, "missing_instance_id"),
    (read_sera, {"instance_id": "x_1", "messages": "[{\"role\": \"critic\", \"content\": \"x\"}]"}, "no_assistant_step"),
    (read_sera_rectified, {"messages": [{"role": "tool_call", "content": "<tool_call>{not json</tool_call>"}]}, "invalid_tool_call_json"),
    (read_sera_rectified, {"messages": [{"role": "user", "content": "hi"}]}, "no_assistant_step"),
    (read_sera_rectified, {"messages": [{"role": "narrator", "content": "x"}]}, "no_assistant_step"),
    (read_mini_swe_agent, {"messages": []}, "missing_instance_id"),
    (read_mini_swe_agent, 17, "row_not_an_object"),
])
def test_bad_rows_of_every_format(reader, row, reason):
    with pytest.raises(BadRecord) as e:
        reader(row)
    assert e.value.reason == reason


def test_invalid_json_arguments_in_a_step_is_a_counted_skip(tmp_path):
    r = rows("coderforge_sample.jsonl")[0]
    msgs = json.loads(r["messages"])
    msgs[7]["tool_calls"][0]["function"]["arguments"] = "{\"command\": \"view\", "  # the editor call, truncated
    t = read_coderforge({**r, "messages": json.dumps(msgs)})
    turns, skips = cut_turns(t)
    assert skips == {"reference_invalid_arguments_json": 1} and len(turns) == 4


def test_sources_weights_filters_and_counted_skips(tmp_path):
    bad = tmp_path / "cf.jsonl"
    good = (FIX / "coderforge_sample.jsonl").read_text().splitlines()
    bad.write_text("\n".join(good + ["{\"trajectory_id\": \"z_run1\", \"messages\": 3}", "not json"]) + "\n")
    cfg = parse_config({"sources": [{"format": "coderforge", "path": str(bad)},
                                    {"format": "sera_rectified", "path": str(FIX / "sera_rectified_sample.jsonl"), "weight": 0.5}],
                        "filters": {"min_reward": 1.0, "excluded_repos": []}})
    pool = build_pool(cfg)
    assert Counter(t.source for t in pool.turns) == {"coderforge": 15, "sera_rectified": 6}  # only reward-1 runs
    assert pool.skipped["filtered_min_reward"] == 3 and pool.skipped["messages_not_a_list"] == 1
    assert pool.skipped["invalid_json_line"] == 1 and pool.skipped["reference_no_action"] == 3
    cfg2 = parse_config({"sources": [{"format": "coderforge", "path": str(FIX / "coderforge_sample.jsonl")}],
                         "filters": {"outcome": "submitted", "excluded_ids": ["orbit__skyline-118"]}})
    pool2 = build_pool(cfg2)
    assert {t.instance_id for t in pool2.turns} == {"acme__widgets-42", "quill__ledger-7"}
    assert pool2.skipped == {"filtered_outcome": 2, "filtered_excluded_id": 2}


def test_folder_of_traj_json_files(tmp_path):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"},
            {"role": "assistant", "content": "THOUGHT: look\n\n```bash\nls\n```"},
            {"role": "user", "content": "<returncode>0</returncode>\n<output>\na.py\n</output>"},
            {"role": "assistant", "content": "done\n\n```bash\necho COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n```"}]
    d = tmp_path / "trajs"
    d.mkdir()
    (d / "acme__w-1.traj.json").write_text(json.dumps({"info": {"exit_status": "Submitted"}, "messages": msgs,
                                                       "trajectory_format": "mini-swe-agent-1"}))
    other = [msgs[0], {"role": "user", "content": "another task"}, msgs[2]]
    (d / "acme__w-2.traj.json").write_text(json.dumps(other))  # bare message list
    (d / "broken.traj.json").write_bytes(b"\xff\xfe not utf-8")
    cfg = parse_config({"sources": [{"format": "mini_swe_agent", "path": str(d)}]})
    pool = build_pool(cfg)
    assert sorted({t.instance_id for t in pool.turns}) == ["acme__w-1", "acme__w-2"]
    assert Counter(t.instance_id for t in pool.turns) == {"acme__w-1": 2, "acme__w-2": 1}
    assert pool.skipped == {"non_utf8": 1}
    sub = next(t for t in pool.turns if t.step == 1)
    assert sub.outcome == "submitted" and protocol.is_submit_command(protocol.check_bash_block(sub.reference["content"]).action)


def test_source_meta_keeps_exactly_the_fields_whose_json_fits():
    def json_len(v):
        return len(json.dumps(v, ensure_ascii=False, default=str))

    row = {"ctl_fits": "\x01" * ((META_MAX_CHARS - 2) // 6), "ctl_over": "\x01" * ((META_MAX_CHARS - 2) // 6 + 1),
           "plain_edge": "é" * (META_MAX_CHARS - 2), "plain_over": "a" * (META_MAX_CHARS - 1), "quotes": '"' * 1100,
           "huge_int": 10 ** 3000, "int": -(10 ** 99), "float": 1.5e300, "flag": True, "none": None,
           "nested": {"a": ["x" * 3000]}, "small_list": [1, "two", None], "consumed": "y" * 9000}
    meta = source_meta(row, ("consumed",))
    for k, v in row.items():
        if k == "consumed":
            assert k not in meta and k not in meta["_omitted"]
        elif json_len(v) > META_MAX_CHARS:
            assert meta["_omitted"][k] == json_len(v) and k not in meta, k
        else:
            assert meta[k] == v and k not in meta["_omitted"], k
    assert set(meta["_omitted"]) == {"ctl_over", "plain_over", "quotes", "huge_int", "nested"}
