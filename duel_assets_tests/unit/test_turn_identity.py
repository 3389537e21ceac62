"""A turn's history_hash is the sha256 of one canonical JSON document, however it is computed."""
import hashlib
import json
import random

import pytest

from duel_assets.lib.turn import _canonical_message, history_hash


def by_definition(history: list[dict], tools) -> str:
    doc = {"history": [_canonical_message(m) for m in history], "tools": tools or None}
    data = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


TRICKY = [
    "", "plain", 'quote " and backslash \\ and \\n literally', "line\nbreak\r\n\ttab",
    "".join(chr(c) for c in range(32)) + "\x7f", "\b\f only the short escapes JSON has besides \\n \\r \\t",
    "é ü 漢字 🙂 \u2028 \u2029 \ufeff", "lone surrogate \ud800 and \udfff", "```bash\nls -la\n```", "\\\"\\\\\n",
]
TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}}]


def _message(rng: random.Random) -> dict:
    role = rng.choice(["system", "user", "assistant", "tool", None])
    content = rng.choice(TRICKY + [None, [{"type": "text", "text": "a part"}], "x" * 5000 + rng.choice(TRICKY)])
    m: dict = {"role": role, "content": content}
    if role == "assistant" and rng.random() < 0.5:
        args = rng.choice(['{"cmd": "ls\\n\\"a\\""}', "not json {", {"cmd": rng.choice(TRICKY)}, '{"b": 1, "a": [1.5, null]}'])
        m["tool_calls"] = [{"id": f"call_{rng.random()}", "type": "function", "function": {"name": "bash", "arguments": args}}]
    if rng.random() < 0.2:
        m["reasoning_content"] = "not part of the identity"
    return m


@pytest.mark.parametrize("seed", range(40))
def test_history_hash_is_the_sha256_of_the_canonical_json(seed):
    rng = random.Random(seed)
    history = [_message(rng) for _ in range(rng.randrange(0, 12))]
    tools = rng.choice([None, [], TOOLS])
    assert history_hash(history, tools) == by_definition(history, tools)


def test_every_single_character_escapes_as_json_does():
    for c in [*map(chr, range(0x80)), "\u2028", "\ud83d", "\U0001f642"]:
        history = [{"role": "user", "content": f"a{c}b"}]
        assert history_hash(history, None) == by_definition(history, None), repr(c)


def test_tool_call_ids_and_reasoning_do_not_change_the_hash_but_content_does():
    a = [{"role": "assistant", "content": "x", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"}}]}]
    b = [{"role": "assistant", "content": "x", "reasoning_content": "r",
          "tool_calls": [{"id": "2", "function": {"name": "f", "arguments": "{ }"}}]}]
    c = [{"role": "assistant", "content": "x\n", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{}"}}]}]
    assert history_hash(a, None) == history_hash(b, None) != history_hash(c, None)
