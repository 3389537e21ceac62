"""Protocol rules for answers and reference turns: the action formats a turn may use, and how an
answer is checked against them.

Two protocols:
  * ``bash_block``: THOUGHT text then exactly one fenced ```bash block (mini-swe-agent v1; v2 text
    configs use the fence ```mswea_bash_command).
  * ``tool_calls``: exactly one OpenAI function call to a tool from the turn's own tool list, with
    arguments that are a JSON object valid against that tool's parameter schema.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE_OPEN_RE = re.compile(r"```(?:bash|mswea_bash_command)[ \t]*\n")
_ANY_FENCE_RE = re.compile(r"```")
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_THOUGHT_PREFIX_RE = re.compile(r"\A\s*THOUGHT\s*:\s*", re.IGNORECASE)
# Chat-template control tokens that leak from some providers (<|tool_calls_section_begin|>,
# <|im_end|>, <|eot_id|>, ...) and raw tool-call markup in text.
CONTROL_TOKEN_RE = re.compile(r"<\|[A-Za-z0-9_./:-]{1,64}\|>|</?tool_call>|</?tool_response>|<\uff5c[^>]{1,64}\uff5c>")
SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")
SUBMIT_TOOLS = ("finish", "submit")


@dataclass(frozen=True)
class FormatCheck:
    ok: bool
    reason: str | None  # null when ok
    thought: str
    action: str  # the bash command, or the tool call rendered as "name(args)"


def split_reasoning(text: str | None) -> tuple[str, str]:
    """Return (reasoning, answer): <think> blocks are moved out of the answer text.

    An unclosed leading <think> (a truncated reply) counts entirely as reasoning.
    """
    if not text:
        return "", ""
    parts = [m.strip() for m in _THINK_RE.findall(text)]
    rest = _THINK_RE.sub("", text)
    low = rest.lower()
    if "<think>" in low:
        i = low.index("<think>")
        parts.append(rest[i + len("<think>"):].strip())
        rest = rest[:i]
    rest = re.sub(r"(?i)</think>", "", rest)
    return "\n\n".join(p for p in parts if p), rest.strip()


def has_control_tokens(text: str | None) -> bool:
    return bool(text and "<" in text and CONTROL_TOKEN_RE.search(text))  # every token starts with "<"


def bash_blocks(text: str, limit: int = 2) -> list[tuple[int, int, int]]:
    """The first ``limit`` fenced bash blocks, as (start, command start, command end): an opening
    fence, then the command up to the first closing fence after it (less one newline before it).
    What ``re.finditer(r"```(?:bash|mswea_bash_command)[ \\t]*\\n(.*?)\\n?```", text, re.DOTALL)``
    finds, with the closing fence found by ``str.find``."""
    out: list[tuple[int, int, int]] = []
    pos = 0
    while len(out) < limit:
        m = _FENCE_OPEN_RE.search(text, pos)
        close = text.find("```", m.end()) if m else -1
        if m is None or close < 0:  # no closing fence after this opening: none after any later one
            break
        out.append((m.start(), m.end(), close - 1 if close > m.end() and text[close - 1] == "\n" else close))
        pos = close + 3
    return out


def check_bash_block(text: str | None) -> FormatCheck:
    text = text or ""
    if not text.strip():
        return FormatCheck(False, "empty_reply", "", "")
    if has_control_tokens(text):
        return FormatCheck(False, "control_tokens", text, "")
    blocks = bash_blocks(text)
    if not blocks:
        return FormatCheck(False, "no_action", text.strip(), "")
    if len(blocks) > 1:
        return FormatCheck(False, "multiple_actions", text[: blocks[0][0]].strip(), "")
    start, body, end = blocks[0]
    thought = _THOUGHT_PREFIX_RE.sub("", text[:start]).strip()
    command = text[body:end].strip("\n")
    if not command.strip():
        return FormatCheck(False, "empty_action", thought, "")
    return FormatCheck(True, None, thought, command)


def is_submit_command(command: str) -> bool:
    first = (command or "").strip().splitlines()[0] if (command or "").strip() else ""
    return any(m in first for m in SUBMIT_MARKERS) and first.lstrip().startswith(("echo", "printf"))


# ---------------------------------------------------------------- tool calls


def tool_index(tools: list[dict] | None) -> dict[str, dict]:
    out = {}
    for t in tools or []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(fn, dict) and fn.get("name"):
            out[fn["name"]] = fn.get("parameters") or {"type": "object"}
    return out


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool,
    "array": list, "object": dict, "null": type(None),
}


def schema_errors(value: Any, schema: dict, path: str = "arguments") -> list[str]:
    """A small JSON-schema subset: type, required, properties, enum, items, additionalProperties=false."""
    errs: list[str] = []
    if not isinstance(schema, dict):
        return errs
    typ = schema.get("type")
    types = typ if isinstance(typ, list) else [typ] if typ else []
    if types:
        ok = False
        for t in types:
            py = _JSON_TYPES.get(t)
            if py is None:
                ok = True
                break
            if isinstance(value, py) and not (t in ("integer", "number") and isinstance(value, bool)):
                ok = True
                break
        if not ok:
            return [f"{path}: expected {'/'.join(types)}, got {type(value).__name__}"]
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        errs.append(f"{path}: {value!r} not one of {enum}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for r in schema.get("required") or []:
            if r not in value:
                errs.append(f"{path}: missing required '{r}'")
        for k, v in value.items():
            if k in props:
                errs.extend(schema_errors(v, props[k], f"{path}.{k}"))
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected property '{k}'")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errs.extend(schema_errors(v, schema["items"], f"{path}[{i}]"))
    return errs


def render_tool_call(name: str, arguments: Any) -> str:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False, sort_keys=True)
    return f"{name}({args})"


def check_tool_calls(content: str | None, tool_calls: list[dict] | None, tools: list[dict] | None) -> FormatCheck:
    content = content or ""
    thought = split_reasoning(content)[1]
    if has_control_tokens(content):
        return FormatCheck(False, "control_tokens", thought, "")
    calls = tool_calls or []
    if not calls:
        return FormatCheck(False, "empty_reply" if not content.strip() else "no_action", thought, "")
    if len(calls) > 1:
        return FormatCheck(False, "multiple_actions", thought, "")
    fn = calls[0].get("function") or {}
    name, raw = fn.get("name"), fn.get("arguments")
    known = tool_index(tools)
    if name not in known:
        return FormatCheck(False, "unknown_tool", thought, render_tool_call(str(name), raw or ""))
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except (TypeError, json.JSONDecodeError):
        return FormatCheck(False, "invalid_arguments_json", thought, render_tool_call(name, raw or ""))
    if not isinstance(args, dict):
        return FormatCheck(False, "invalid_arguments", thought, render_tool_call(name, raw))
    errs = schema_errors(args, known[name])
    if errs:
        return FormatCheck(False, "invalid_arguments", thought, render_tool_call(name, args))
    return FormatCheck(True, None, thought, render_tool_call(name, args))


def check_answer(protocol: str, content: str | None, tool_calls: list[dict] | None, tools: list[dict] | None) -> FormatCheck:
    if protocol == "tool_calls":
        return check_tool_calls(content, tool_calls, tools)
    if tool_calls:
        return FormatCheck(False, "unexpected_tool_call", content or "", "")
    return check_bash_block(content)
