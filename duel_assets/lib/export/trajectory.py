"""Whole-trajectory training rows (``[export] layout = "trajectory"``).

One row per source trajectory with at least one exported turn: every message of the trajectory in
the ``openai`` message shape, and on each message a ``train`` flag. An assistant message is trained
when its turn's bucket is one of ``[export] buckets`` (``defeat`` never trains); the messages of
turns never dueled (not sampled, excluded, unparsed, or in a partition left out of the export) are
context. Where a trained turn's challenger answer keeps the trajectory consistent it replaces the
original move: when it is the row's last move (its observation, if any, goes with it) or when its
action equals the original's (the original tool-call ids are kept, so the replies still match).
Otherwise the original move stays, trained because its turn was accepted. ``RULES`` names what
happened to each assistant message; the card counts them.

Tokens are counted without a model tokenizer: :func:`message_tokens` counts the words and
punctuation marks (``\\w+`` runs and single other non-space characters) of a message's content,
reasoning and tool calls (name and arguments). The share of trained tokens is trained tokens over
all tokens of the rows, every role included.
"""
from __future__ import annotations

import json
import re

from ..duel import protocol
from .layouts import _calls, _target, openai_tools, split_reasoning

RULES = ("replaced_last_move", "replaced_same_action", "kept_original_accepted", "not_trained_defeat", "not_dueled")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def message_tokens(m: dict) -> int:
    """Words and punctuation marks of the message's content, reasoning and tool calls."""
    parts = [m.get("content") or "", m.get("reasoning_content") or ""]
    for c in m.get("tool_calls") or []:
        fn = c.get("function") or {}
        parts += [fn.get("name") or "", fn.get("arguments") or ""]
    return sum(len(_TOKEN.findall(p)) for p in parts)


def _message(m: dict, keep: bool) -> dict:
    reasoning, content = (None, m.get("content") or "")
    if m["role"] == "assistant":
        reasoning, content = split_reasoning(content)
        reasoning = "\n\n".join(p for p in ((m.get("reasoning_content") or "").strip(), reasoning or "") if p) or None
    return {"role": m["role"], "content": content, "reasoning_content": reasoning if keep else None,
            "tool_calls": _calls(m.get("tool_calls")), "tool_call_id": m.get("tool_call_id"), "name": m.get("name"),
            "train": False, "weight": None, "turn_id": None}


def _action(m: dict, proto: str, tools) -> str:
    check = protocol.check_answer(proto, m.get("content"), m.get("tool_calls"), tools)
    return check.action.strip() if check.ok else ""


def _replacement(original: dict, chal: dict, keep: bool) -> dict:
    reasoning, content = _target(chal, keep)
    calls = _calls(chal.get("tool_calls"))
    ids = [c.get("id") for c in original.get("tool_calls") or []]
    if calls and ids:  # the same action: keep the ids the tool replies answer
        calls = [{**c, "id": ids[i] if i < len(ids) and ids[i] else c["id"]} for i, c in enumerate(calls)]
    return {**original, "content": content, "reasoning_content": reasoning, "tool_calls": calls}


def trajectory_row(traj: dict, turns: dict[int, dict], trained_buckets: set[str], keep_reasoning: bool = True,
                   weight: str = "none", truncate: bool = False) -> tuple[dict, dict[str, int]]:
    """The row of one trajectory and how many assistant messages each rule covered.

    ``traj``: ``{messages, tools, protocol, source, instance_id, traj_id, complete}``; ``turns``: its dueled
    turns by step, each ``{turn_id, bucket, score, challenger, prompt_file, standin, ...}``."""
    proto, tools = traj.get("protocol") or "bash_block", traj.get("tools")
    msgs = [_message(m, keep_reasoning) for m in traj["messages"]]
    steps = [i for i, m in enumerate(traj["messages"]) if m["role"] == "assistant"]
    trained = {s for s, t in turns.items() if t["bucket"] in trained_buckets}
    end = len(msgs)
    if truncate and trained:
        end = steps[max(trained)] + 1 if max(trained) < len(steps) else end
    last_step = max((s for s, i in enumerate(steps) if i < end), default=-1)
    rules = dict.fromkeys(RULES, 0)
    for s, i in enumerate(steps):
        if i >= end:
            break
        t = turns.get(s)
        if t is not None:
            msgs[i]["turn_id"] = t["turn_id"]
        if t is None:
            rule = "not_dueled"
        elif s not in trained:
            rule = "not_trained_defeat"
        else:
            chal = t.get("challenger") or {}
            same = bool(chal.get("action")) and (chal.get("action") or "").strip() == _action(traj["messages"][i], proto, tools)
            rule = "replaced_last_move" if s == last_step and not same else "replaced_same_action" if same else "kept_original_accepted"
            if rule != "kept_original_accepted":
                msgs[i] = _replacement(msgs[i], chal, keep_reasoning)
            if rule == "replaced_last_move":
                end = i + 1  # the original move's observation does not answer the new move
            msgs[i]["train"] = True
            if weight == "score" and t.get("score") is not None:
                msgs[i]["weight"] = round(float(t["score"]) / 100, 4)
        rules[rule] += 1
    msgs = msgs[:end]
    if weight == "score":
        for m in msgs:
            if m["weight"] is None:
                m["weight"] = 0.0
    tokens = [message_tokens(m) for m in msgs]
    dueled = [t for t in turns.values()]
    meta = traj.get("source_meta")
    row = {
        "messages": msgs, "tools": openai_tools(tools), "traj_id": traj["traj_id"], "source": traj.get("source"),
        "protocol": proto, "instance_id": traj.get("instance_id"), "complete": bool(traj.get("complete", True)),
        "truncated": end < len(traj["messages"]), "turns": sorted(t["turn_id"] for t in dueled),
        "buckets": [turns[s]["bucket"] for s in sorted(turns)], "prompt_files": sorted({t["prompt_file"] for t in dueled}),
        "trained_messages": sum(m["train"] for m in msgs), "tokens": sum(tokens),
        "trained_tokens": sum(n for n, m in zip(tokens, msgs) if m["train"]),
        "license": traj.get("license"), "reward": traj.get("reward"),
        "source_meta": json.dumps(meta, ensure_ascii=False) if meta else None,
        "contamination": sorted({c for t in dueled for c in t.get("contamination") or []}) or None,
        "standin": any(bool(t.get("standin")) for t in dueled),
    }
    return row, rules


def trajectory_schema():
    """One schema for every trajectory shard."""
    import pyarrow as pa

    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    message = pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning_content", pa.string()),
                         ("tool_calls", pa.list_(call)), ("tool_call_id", pa.string()), ("name", pa.string()),
                         ("train", pa.bool_()), ("weight", pa.float64()), ("turn_id", pa.string())])
    tool = pa.struct([("type", pa.string()), ("function", pa.struct([
        ("name", pa.string()), ("description", pa.string()), ("parameters", pa.string())]))])
    return pa.schema([
        ("messages", pa.list_(message)), ("tools", pa.list_(tool)), ("traj_id", pa.string()), ("source", pa.string()),
        ("protocol", pa.string()), ("instance_id", pa.string()), ("complete", pa.bool_()), ("truncated", pa.bool_()),
        ("turns", pa.list_(pa.string())), ("buckets", pa.list_(pa.string())), ("prompt_files", pa.list_(pa.string())),
        ("trained_messages", pa.int32()), ("tokens", pa.int64()), ("trained_tokens", pa.int64()),
        ("license", pa.string()), ("reward", pa.float64()), ("source_meta", pa.string()),
        ("contamination", pa.list_(pa.string())), ("standin", pa.bool_())])
