"""The stand-in's fake model: deterministic replies that are NOT from a model.

* generation requests get one bash block (or one tool call when tools are sent); a request that
  carries a PR record (the challenger's) gets a step aimed at the PR's changed files;
* judge requests (their last message asks for the "winner" JSON) get scores from simple heuristics
  (one well-formed action, naming a changed file);
* quirk models for tests: ``standin-quirk-{think,reasoning,control,empty,nousage,length,multi}``,
  ``standin-quirk-malformed-unseeded`` (breaks the protocol unless the request carries a ``seed``),
  ``standin-judge-{biased-a,garbage,fenced,truncated}``.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

NOT_A_MODEL = "duel-standin-not-a-model"
SERVED_PREFIX = "duel-standin/"  # the reply's "model": the stand-in names itself as the server
METRICS = ("correctness", "grounding", "progress", "protocol", "efficiency")
_PATH_RE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.\w+)")


def h(*parts: Any) -> int:
    return int(hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def text_of(messages: list[dict]) -> str:
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        out.append(c or "")
    return "\n".join(out)


def between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.DOTALL)
    return m.group(1) if m else ""


def changed_files(text: str) -> list[str]:
    m = re.search(r"Changed files:\n((?:- .*\n?)+)", text)
    return [x[2:].strip() for x in m.group(1).splitlines() if x.startswith("- ")] if m else []


def is_judge_request(body: dict) -> bool:
    messages = body.get("messages") or []
    return bool(messages) and '"winner"' in text_of(messages[-1:])


def _pr_block(messages: list[dict]) -> str:
    return next((between(text_of([m]), "pr_record") for m in messages if "<pr_record>" in text_of([m])), "")


def _generation(body: dict) -> tuple[str, str]:
    """(thought, command) for a king or challenger request."""
    messages = body.get("messages") or []
    pr = _pr_block(messages)
    convo = text_of([m for m in messages if "<pr_record>" not in text_of([m])][:-1])
    seen_paths = list(dict.fromkeys(p.lstrip("./") for p in _PATH_RE.findall(convo)))
    digest = h(json.dumps(messages, sort_keys=True), body.get("seed"))
    if pr:
        targets = changed_files(pr)
        visible = [t for t in targets if t in seen_paths]
        if visible:
            return "The file at the centre of the problem is already in view; read it closely.", f"cat -n {visible[0]}"
        if targets and digest % 3 == 0:  # sometimes breaks the blind-agent rule, so the leak guard has work
            return "Open the file that most likely holds the bug.", f"cat -n {targets[0]}"
        stem = targets[0].rsplit("/", 1)[-1].split(".")[0] if targets else "main"
        return "Search the tree for the component named in the issue.", f"grep -rn \"{stem}\" . | head -20"
    if seen_paths:
        return "Look at a file that appeared earlier.", f"head -40 {seen_paths[digest % len(seen_paths)]}"
    generic = ["ls -la", "git status", "find . -type f -not -path './.git/*' | head -40", "git log --oneline -5"]
    return "Get oriented in the repository.", generic[digest % len(generic)]


def judge_verdict(body: dict) -> dict:
    last = text_of((body.get("messages") or [])[-1:])
    files = changed_files(_pr_block(body.get("messages") or []))
    out: dict[str, dict[str, int]] = {}
    judge = str(body.get("model") or "")
    feats = {}
    for side in ("A", "B"):
        ans = between(last, f"answer_{side}")
        n_blocks = len(re.findall(r"```(?:bash|mswea_bash_command)", ans)) + ans.count("[tool call]")
        hits = sum(1 for f in files if f in ans)
        feats[side] = (n_blocks, hits, h(judge, ans) % 4)
    for m in METRICS:
        out[m] = {}
        for side, (n_blocks, hits, jitter) in feats.items():
            base = 4 + jitter
            if m == "protocol":
                v = 9 if n_blocks == 1 else 2
            elif m in ("progress", "correctness"):
                v = base + (3 if hits else 0)
            else:
                v = base
            out[m][side] = max(0, min(10, v))
    tot = {s: sum(out[m][s] for m in METRICS) for s in ("A", "B")}
    winner = "A" if tot["A"] > tot["B"] else "B" if tot["B"] > tot["A"] else "tie"
    return {"scores": out, "winner": winner, "reason": "stand-in heuristic (not a model): one well-formed action, aimed at the changed files."}


def _judge_content(body: dict, model: str, verdict: dict | None) -> tuple[str, str]:
    verdict = verdict or judge_verdict(body)
    finish = "stop"
    if model == "standin-judge-biased-a":
        verdict["scores"] = {m: {"A": 9, "B": 3} for m in verdict["scores"]}
        verdict["winner"] = "A"
    content = json.dumps(verdict)
    if isinstance(body.get("response_format"), dict):  # structured output asked for: the schema's JSON, as a grammar gives
        return content, finish
    if model == "standin-judge-garbage":
        content = "I think both answers are fine overall."
    elif model == "standin-judge-fenced":
        content = f"<think>compare them</think>Here is my verdict:\n```json\n{content}\n```\nThanks."
    elif model == "standin-judge-truncated":
        content, finish = content[: len(content) // 2], "length"
    return content, finish


def completion(body: dict, judge, key: str, prompt_chars: int) -> tuple[dict, bool]:
    """(chat.completion JSON, include usage). ``judge(body)`` may supply a judge verdict (a judge of
    known quality for calibration: None for requests it does not know); otherwise the heuristic decides.
    ``key`` is the body's hash (:func:`.provider.body_key`), ``prompt_chars`` the length of its
    messages as JSON (:func:`.provider.pieces_chars`): the caller has both already."""
    model = str(body.get("model") or "standin")
    reasoning, tool_calls, finish = None, None, "stop"
    if is_judge_request(body):
        content, finish = _judge_content(body, model, judge(body) if judge else None)
    else:
        thought, command = _generation(body)
        thought = f"(stand-in reply, not a model) {thought}"
        tools = body.get("tools") or []
        if tools:
            fn = next((t["function"] for t in tools if "command" in json.dumps(t.get("function", {}).get("parameters", {}))), tools[0]["function"])
            content = thought
            tool_calls = [{"id": f"call_{h(command) % 10**8}", "type": "function",
                           "function": {"name": fn["name"], "arguments": json.dumps({"command": command})}}]
            finish = "tool_calls"
        else:
            content = f"THOUGHT: {thought}\n\n```bash\n{command}\n```"
        if model == "standin-quirk-think":
            content = f"<think>private chain of thought</think>{content}"
        elif model == "standin-quirk-reasoning":
            reasoning = "separate reasoning field"
        elif model == "standin-quirk-control":
            content = f"{content}<|tool_calls_section_begin|>"
        elif model == "standin-quirk-empty":
            content = ""
        elif model == "standin-quirk-length":
            content, finish = content[: max(1, len(content) // 3)], "length"
        elif model == "standin-quirk-multi" or (model == "standin-quirk-malformed-unseeded" and not body.get("seed")):
            content = f"{content}\n\n```bash\nls\n```"
            tool_calls = None
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning
    prompt_tokens = prompt_chars // 4
    completion_tokens = len(content) // 4 + 1
    resp = {
        "id": f"standin-{h(key) % 10**12}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": f"{SERVED_PREFIX}{model}",  # who served it: the stand-in, whatever model was asked for
        "system_fingerprint": NOT_A_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    return resp, model != "standin-quirk-nousage"


def stream_events(resp: dict, pieces: int) -> list[dict]:
    """A completion as ``chat.completion.chunk`` events: role, content in ``pieces`` parts, tool
    calls, then the finish and (when the reply has one) the usage."""
    msg = resp["choices"][0]["message"]
    base = {k: resp[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"

    def ev(delta: dict, finish=None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [ev({"role": "assistant", "content": ""})]
    if msg.get("reasoning_content"):
        out.append(ev({"reasoning_content": msg["reasoning_content"]}))
    text = msg.get("content") or ""
    step = max(1, -(-len(text) // max(1, pieces)))
    out += [ev({"content": text[i:i + step]}) for i in range(0, len(text), step)]
    for i, tc in enumerate(msg.get("tool_calls") or []):
        out.append(ev({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                       "function": {"name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}}]}))
    out.append(ev({}, resp["choices"][0]["finish_reason"]))
    if "usage" in resp:
        out.append({**base, "choices": [], "usage": resp["usage"]})
    return out
