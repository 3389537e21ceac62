"""Assistant steps made readable and rebuilt in the turn's own protocol.

A :class:`Step` is one assistant move: its THOUGHT, and its action — a shell command (a bash block,
or the ``command`` argument of a shell tool such as ``bash`` / ``execute_bash``) or another tool
call. :func:`build` turns a thought and an action back into an assistant message in the style of
the reference (the same fence and ``THOUGHT:`` prefix for ``bash_block``; the same tools for
``tool_calls``), so a counterpart differs from the dataset's step only where it is meant to.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..duel.protocol import SUBMIT_MARKERS, SUBMIT_TOOLS, check_bash_block, is_submit_command, split_reasoning, tool_index

_FENCE_RE = re.compile(r"```(bash|mswea_bash_command)")
# file paths as agents write them: a/b.ext, ./a/b.ext, /testbed/a/b.ext
PATH_RE = re.compile(r"(?<![\w/.-])((?:\.?/)?(?:[\w.-]+/)+[\w.-]+\.\w+)")
_EDIT_RE = re.compile(r"\bsed\s+-i|\btee\b|<<|(?<![0-9&])>>?\s*(?!&|/dev/null)[\w./]|\bpatch\b|\bgit\s+apply\b"
                      r"|\b(?:mv|cp|rm|touch|mkdir)\s")
_EDITOR_WRITES = ("create", "str_replace", "insert", "undo_edit", "write", "edit")


@dataclass
class Step:
    protocol: str
    thought: str
    command: str | None = None  # shell command, when the action is one
    tool: str | None = None  # tool_calls: the tool called
    args: dict = field(default_factory=dict)  # tool_calls: its arguments
    fence: str = "bash"  # bash_block: the fence the reference used
    thought_prefix: bool = False  # bash_block: the reference began with "THOUGHT:"

    @property
    def action_text(self) -> str:
        if self.command is not None:
            return self.command
        return f"{self.tool}({json.dumps(self.args, sort_keys=True)})"


def shell_tool(tools: list[dict] | None) -> str | None:
    """The tool that runs a shell command: a string ``command`` parameter that is not an enum."""
    for name, params in tool_index(tools).items():
        cmd = (params.get("properties") or {}).get("command")
        if isinstance(cmd, dict) and cmd.get("type") == "string" and "enum" not in cmd:
            return name
    return None


def submit_tool(tools: list[dict] | None) -> str | None:
    return next((n for n in tool_index(tools) if n in SUBMIT_TOOLS), None)


def read_step(msg: dict, protocol: str, tools: list[dict] | None) -> Step | None:
    """The step of one assistant message; None when it is not one well-formed action."""
    if protocol == "bash_block":
        content = msg.get("content") or ""
        check = check_bash_block(content)
        if not check.ok:
            return None
        fence = _FENCE_RE.search(content)
        return Step("bash_block", check.thought, command=check.action, fence=fence.group(1) if fence else "bash",
                    thought_prefix=content.lstrip().upper().startswith("THOUGHT"))
    calls = msg.get("tool_calls") or []
    if len(calls) != 1:
        return None
    fn = calls[0].get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except (TypeError, json.JSONDecodeError):
        return None
    if not isinstance(args, dict):
        return None
    thought = split_reasoning(msg.get("content"))[1]
    name = fn.get("name")
    command = args.get("command") if name == shell_tool(tools) and isinstance(args.get("command"), str) else None
    return Step("tool_calls", thought, command=command, tool=name, args=args)


def build(step: Step, tools: list[dict] | None, thought: str | None = None, command: str | None = None,
          tool: str | None = None, args: dict | None = None, call_id: str = "call_cal") -> dict:
    """An assistant message in ``step``'s protocol and style with the given thought and action
    (a shell command, or a tool with its arguments); unspecified parts are the step's own."""
    thought = step.thought if thought is None else thought
    if step.protocol == "bash_block":
        cmd = step.command if command is None else command
        head = f"THOUGHT: {thought}" if step.thought_prefix else thought
        return {"role": "assistant", "content": f"{head}\n\n```{step.fence}\n{cmd}\n```"}
    if command is not None:
        tool, args = shell_tool(tools), {"command": command}
    elif tool is None:
        tool, args = step.tool, step.args
    call = {"id": call_id, "type": "function", "function": {"name": tool, "arguments": json.dumps(args or {}, ensure_ascii=False)}}
    return {"role": "assistant", "content": thought, "tool_calls": [call]}


def is_submit(step: Step) -> bool:
    if step.tool in SUBMIT_TOOLS:
        return True
    return step.command is not None and is_submit_command(step.command)


def submit_marker(history_text: str) -> str:
    """The submit marker the trajectory's own instructions name (mini-swe-agent v1 or v2)."""
    return next((m for m in SUBMIT_MARKERS if m in history_text), SUBMIT_MARKERS[0])


def is_edit(step: Step) -> bool:
    """A step that changes files: shell writes (sed -i, redirections, heredocs, patch, mv/cp/rm...)
    or an editor call that writes (create, str_replace, insert, undo_edit)."""
    if step.command is not None:
        return bool(_EDIT_RE.search(step.command))
    if step.tool is None:
        return False
    if step.args.get("command") in _EDITOR_WRITES:
        return True
    return any(w in step.tool.lower() for w in ("write", "edit_file", "create_file", "apply"))


def history_text(history: list[dict]) -> str:
    """Everything the agent has seen: message texts and the tool calls spelled out."""
    parts = []
    for m in history:
        parts.append(m.get("content") or "")
        for c in m.get("tool_calls") or []:
            parts.append(json.dumps((c.get("function") or {}).get("arguments") or ""))
            parts.append(str((c.get("function") or {}).get("arguments") or ""))
    return "\n".join(parts)


def paths_in(text: str) -> list[str]:
    """File paths in ``text``, in order of appearance, a leading ``./`` dropped."""
    return list(dict.fromkeys(p[2:] if p.startswith("./") else p for p in PATH_RE.findall(text or "")))


def previous_steps(history: list[dict], protocol: str, tools: list[dict] | None) -> list[Step | None]:
    return [read_step(m, protocol, tools) for m in history if m.get("role") == "assistant"]
