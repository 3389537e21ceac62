"""Partitions for the review page's tests, written straight into a real warehouse (a DuckDB file or a
DuckLake) through the Warehouse, with verdicts, gate and summary computed by the project's own code.

``write_partition(wh, paths, key, n)`` writes n turns: half of them tool-calling, with histories,
PR records, both answers, two judges in both orders (some turns split the panel, some flip with
the order, some leak, one fails to parse) and the verdicts. ``hostile=True`` puts hostile text in
every field a model or the internet fills (script tags, ``</textarea>``, event-handler attributes,
``javascript:`` links, replacement characters, template syntax) and a 1 MB single-line observation
in the first turn.
"""
from __future__ import annotations

import json

from duel_assets.lib import tables
from duel_assets.lib.export.summary import write_partition_summary
from duel_assets.lib.settings import METRICS, ChainConfig, Paths
from duel_assets.lib.verdict import verdicts
from duel_assets.lib.verdict.replies import CHALLENGER_FIRST, KING_FIRST
from duel_assets.lib.warehouse import Warehouse

HOSTILE = ('<script>alert("xss")</script></textarea></pre><img src=x onerror="alert(1)">'
           '<a href="javascript:alert(2)">click me</a><svg onload=alert(3)></svg> \ufffd\ufffd {{ 7*7 }} ${7*7}')
HOSTILE_MARK = "</textarea></pre><img src=x onerror="  # what the escaped page must show as text
BIG_OBSERVATION_CHARS = 1_000_000
JUDGES = ("judge-a", "judge-b")
TOOLS = [{"type": "function", "function": {"name": "bash", "description": "run a shell command",
                                           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]


def _patch(i: int, hostile: bool) -> str:
    extra = f"+    note = {json.dumps(HOSTILE)}\n" if hostile else ""
    return (f"diff --git a/src/mod{i}.py b/src/mod{i}.py\nindex 111..222 100644\n--- a/src/mod{i}.py\n+++ b/src/mod{i}.py\n"
            f"@@ -1,4 +1,5 @@\n def handler_{i}(x):\n-    return x\n+    return clamp_value_{i}(x)\n{extra} # end\n")


def _history(i: int, tool: bool, hostile: bool, steps: int) -> list[dict]:
    bad = HOSTILE if hostile else ""
    h: list[dict] = [{"role": "system", "content": "You are a careful engineer."},
                     {"role": "user", "content": f"Fix issue {i}: handler_{i} must clamp its input. {bad}"}]
    for s in range(steps):
        obs = f"line {s} of src/mod{i}.py\n" * 30 + bad
        if hostile and i == 0 and s == 0:
            obs = "A" * (BIG_OBSERVATION_CHARS - len(HOSTILE)) + HOSTILE  # one line, 1 MB
        if tool:
            h.append({"role": "assistant", "content": f"Look at step {s}. {bad}", "tool_calls": [
                {"id": f"c{s}", "type": "function",
                 "function": {"name": "bash", "arguments": json.dumps({"command": f"sed -n 1,40p src/mod{i}.py {bad}"})}}]})
            h.append({"role": "tool", "tool_call_id": f"c{s}", "content": obs})
        else:
            h.append({"role": "assistant", "content": f"THOUGHT: step {s} {bad}\n\n```bash\ncat src/mod{i}.py\n```"})
            h.append({"role": "user", "content": obs})
    return h


def _tid(i: int, prefix: str) -> str:
    return f"{prefix}{i:03d}"


def _answer(i: int, role: str, tool: bool, hostile: bool, prefix: str) -> dict:
    bad = HOSTILE if hostile else ""
    target = f"clamp_value_{i}" if role == "challenger" and i % 4 == 1 else f"src/mod{i}.py"
    cmd = f"grep -n {target} -r src {bad}".strip()
    row = {"turn_id": _tid(i, prefix), "instance_id": f"inst-{i % 7}", "role": role, "opponent": "king",
           "model": f"model-{role}{bad[:20]}", "sample_index": 0, "format_ok": True, "format_reason": None,
           "prompt_tokens": 1000, "completion_tokens": 80, "cached_tokens": 200, "reasoning": f"thinking {bad}"}
    if tool:
        row.update(content=f"Search first. {bad}", tool_calls=[{"id": "x", "type": "function", "function": {
            "name": "bash", "arguments": json.dumps({"command": cmd})}}], action=cmd)
    else:
        row.update(content=f"THOUGHT: search first. {bad}\n\n```bash\n{cmd}\n```", tool_calls=None, action=cmd)
    if role == "challenger":
        leak = i % 4 == 1
        row.update(leak_suspect=leak, leak_evidence=[f"clamp_value_{i}"] + ([f"<b>{bad[:30]}"] if hostile else []) if leak else [])
    return row


def _judgements(i: int, hostile: bool, prefix: str) -> list[dict]:
    """Scores per (judge, order): turn i % 5 picks the pattern (agree, split, flip, ...)."""
    rows = []
    for judge in JUDGES:
        for order in (KING_FIRST, CHALLENGER_FIRST):
            c, o = 8, 5  # challenger better
            if i % 5 == 1 and judge == "judge-b":
                c, o = 4, 7  # split panel
            if i % 5 == 2 and judge == "judge-a" and order == CHALLENGER_FIRST:
                c, o = 3, 6  # flips with the order
            if i % 5 == 3:
                c, o = 6, 6  # tie
            if i % 5 == 4 and judge == "judge-a":
                c, o = (7, 6) if order == KING_FIRST else (6, 6)
            unparsed = i % 17 == 16 and judge == "judge-b"
            rows.append({
                "turn_id": _tid(i, prefix), "judge": judge, "order": order, "opponent": "king", "parsed": not unparsed,
                "parse_error": "no JSON object" if unparsed else None, "retried": unparsed,
                **{f"{m}_challenger": None if unparsed else c + (k % 2) for k, m in enumerate(METRICS)},
                **{f"{m}_opponent": None if unparsed else o for m in METRICS},
                "winner": None if unparsed else ("challenger" if c > o else "opponent" if c < o else "tie"),
                "reason": f"{judge} thinks so. {HOSTILE if hostile else ''}",
                "raw_reply": f"not json {HOSTILE if hostile else ''}" if unparsed else "{}",
                "prompt_tokens": 3000, "completion_tokens": 120, "cached_tokens": 1500,
            })
    return rows


def write_partition(wh: Warehouse, paths: Paths, key: str, n: int, hostile: bool = False, steps: int = 4,
                    cfg: ChainConfig | None = None, prefix: str = "t") -> list[str]:
    """Write the partition's six tables and its summary; returns its turn ids (``<prefix><i:03d>``) in order."""
    cfg = cfg or ChainConfig()
    turns, prs, kings, chals, judges = [], {}, [], [], []
    for i in range(n):
        tool = i % 2 == 0
        tid = _tid(i, prefix)
        turns.append({"turn_id": tid, "instance_id": f"inst-{i % 7}", "repo": f"acme/widgets{HOSTILE if hostile else ''}",
                      "source": "fixture", "traj_id": f"traj-{i}", "step": steps, "protocol": "tool_calls" if tool else "bash_block",
                      "history": _history(i, tool, hostile, steps), "tools": TOOLS if tool else None,
                      "reference": {"role": "assistant", "content": f"THOUGHT: the dataset's step {i}"},
                      "outcome": "submitted", "trimmed": False, "license": "apache-2.0", "history_hash": f"h{i}"})
        prs[f"inst-{i % 7}"] = {"instance_id": f"inst-{i % 7}", "repo": "acme/widgets", "base_commit": "abc",
                                "problem_statement": f"handler {i} must clamp. {HOSTILE if hostile else ''}",
                                "pr_description": "clamp", "patch": _patch(i % 7, hostile),
                                "changed_files": json.dumps([f"src/mod{i % 7}.py"]), "missing": False,
                                "record_source": "fixture"}
        kings.append(_answer(i, "king", tool, hostile, prefix))
        chals.append(_answer(i, "challenger", tool, hostile, prefix))
        judges.extend(_judgements(i, hostile, prefix))
    for t in turns:
        t["history_messages"] = len(t["history"])
        t["history_chars"] = sum(len(m.get("content") or "") for m in t["history"])
    frames = {"sampled_turns": tables.frame("sampled_turns", turns, key),
              "pr_records": tables.frame("pr_records", list(prs.values()), key),
              "king_answers": tables.frame("king_answers", kings, key),
              "challenger_answers": tables.frame("challenger_answers", chals, key),
              "judge_scores": tables.frame("judge_scores", judges, key)}
    ids = [t["turn_id"] for t in turns]
    rows = verdicts.verdict_rows(frames["judge_scores"], frames["challenger_answers"], ids, cfg, frames["king_answers"])
    frames["duel_verdict"] = tables.frame("duel_verdict", rows, key)
    with wh.connect() as con:
        for table, df in frames.items():
            wh.replace_partition(con, table, df, tables.SCHEMAS[table], "prompt_file", [key])
    g = verdicts.partition_gate(rows, cfg.gate)
    prov = verdicts.provenance(frames["king_answers"], frames["challenger_answers"], frames["judge_scores"])
    write_partition_summary(paths.ensure(), key, g, rows, prov, verdicts.bucketing(cfg))
    return ids

