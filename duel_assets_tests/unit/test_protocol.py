import json
import random
import re

import pytest

from duel_assets.lib.duel import protocol as p

TOOLS = [{"type": "function", "function": {"name": "execute_bash", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}}, "required": ["command"]}}},
    {"type": "function", "function": {"name": "finish", "parameters": {"type": "object", "properties": {"message": {"type": "string"}}}}}]


def call(name, args):
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def test_one_bash_block_splits_thought_and_command():
    c = p.check_bash_block("THOUGHT: look around first.\n\n```bash\nls -la\n```\n")
    assert c.ok and c.thought == "look around first." and c.action == "ls -la"


def test_mswea_fence_is_a_bash_block():
    c = p.check_bash_block("Run it.\n\n```mswea_bash_command\necho hi\n```")
    assert c.ok and c.action == "echo hi"


@pytest.mark.parametrize("text,reason", [
    ("", "empty_reply"),
    ("   \n", "empty_reply"),
    ("I would list the files.", "no_action"),
    ("a\n```bash\nls\n```\nb\n```bash\npwd\n```", "multiple_actions"),
    ("THOUGHT: x\n```bash\nls\n```<|tool_calls_section_begin|>", "control_tokens"),
    ("x <|im_end|>", "control_tokens"),
    ("x\n```bash\n\n```", "empty_action"),
])
def test_protocol_breaks(text, reason):
    c = p.check_bash_block(text)
    assert not c.ok and c.reason == reason


def test_split_reasoning_keeps_think_apart():
    r, a = p.split_reasoning("<think>secret plan</think>THOUGHT: do it\n```bash\nls\n```")
    assert r == "secret plan" and a.startswith("THOUGHT: do it") and "<think>" not in a
    r, a = p.split_reasoning("<think>cut off mid-way")
    assert r == "cut off mid-way" and a == ""


def test_submit_detection():
    assert p.is_submit_command("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")
    assert p.is_submit_command("echo MINI_SWE_AGENT_FINAL_OUTPUT && git diff")
    assert not p.is_submit_command("grep -rn COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT .")


def test_tool_calls_rules():
    assert p.check_tool_calls("", [call("execute_bash", {"command": "ls"})], TOOLS).ok
    assert p.check_tool_calls("", [call("rm_rf", {"x": 1})], TOOLS).reason == "unknown_tool"
    assert p.check_tool_calls("", [call("execute_bash", "{not json")], TOOLS).reason == "invalid_arguments_json"
    assert p.check_tool_calls("", [call("execute_bash", {"timeout": 3})], TOOLS).reason == "invalid_arguments"
    assert p.check_tool_calls("", [call("execute_bash", {"command": 5})], TOOLS).reason == "invalid_arguments"
    two = [call("execute_bash", {"command": "ls"}), call("finish", {})]
    assert p.check_tool_calls("", two, TOOLS).reason == "multiple_actions"
    assert p.check_tool_calls("", [], TOOLS).reason == "empty_reply"
    assert p.check_answer("bash_block", "x", [call("execute_bash", {"command": "ls"})], None).reason == "unexpected_tool_call"


FENCED = re.compile(r"```(?:bash|mswea_bash_command)[ \t]*\n(.*?)\n?```", re.DOTALL)  # the rule as a regular expression
PIECES = ["```", "``", "`", "bash", "mswea_bash_command", "\n", " ", "\t", "ls", "THOUGHT: ", "<", "x"]


@pytest.mark.parametrize("seed", range(20))
def test_bash_blocks_finds_what_the_fence_regex_finds(seed):
    rng = random.Random(seed)
    for _ in range(500):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 30)))
        want = [(m.start(), m.start(1), m.end(1)) for m in FENCED.finditer(text)]
        assert p.bash_blocks(text, limit=len(want) + 1) == want, repr(text)
        assert p.bash_blocks(text) == want[:2], repr(text)
