"""Known tool schemas of the scaffolds whose rows may not carry them.

OpenHands 0.52.1 (CodeAct: execute_bash, str_replace_editor, think, finish) and SWE-agent
function calling (bash, str_replace_editor, submit), written from their documented parameters.
"""
from __future__ import annotations


def _fn(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


_EDITOR_PROPS = {
    "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
                "description": "The command to run."},
    "path": {"type": "string", "description": "Absolute path to a file or directory."},
    "file_text": {"type": "string", "description": "Content of the file to create (create)."},
    "old_str": {"type": "string", "description": "Exact text to replace (str_replace)."},
    "new_str": {"type": "string", "description": "Replacement or inserted text (str_replace, insert)."},
    "insert_line": {"type": "integer", "description": "Insert after this line (insert)."},
    "view_range": {"type": "array", "items": {"type": "integer"}, "description": "[start, end] lines to view."},
}

OPENHANDS_TOOLS = [
    _fn("execute_bash", "Execute a bash command in the terminal.", {
        "command": {"type": "string", "description": "The bash command to execute."},
        "is_input": {"type": "string", "enum": ["true", "false"], "description": "Input to a running process."},
        "timeout": {"type": "number", "description": "Timeout in seconds."},
    }, ["command"]),
    _fn("str_replace_editor", "View, create and edit files.", _EDITOR_PROPS, ["command", "path"]),
    _fn("think", "Log a thought; no effect on the environment.", {"thought": {"type": "string"}}, ["thought"]),
    _fn("finish", "Signal that the task is complete.", {"message": {"type": "string"}}, []),
]

SWE_AGENT_TOOLS = [
    _fn("bash", "Run a bash command in the repository.", {"command": {"type": "string"}}, ["command"]),
    _fn("str_replace_editor", "View, create and edit files.", _EDITOR_PROPS, ["command", "path"]),
    _fn("submit", "Submit the current changes as the final answer.", {}, []),
]

MINI_SWE_AGENT_TOOLS = [
    _fn("bash", "Execute a bash command.", {"command": {"type": "string"}}, ["command"]),
]

KNOWN_TOOLS = {t["function"]["name"]: t for t in (*SWE_AGENT_TOOLS, *OPENHANDS_TOOLS)}
_JSON_TYPE = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


def tools_from_calls(calls: list[tuple[str, dict]], known: dict[str, dict] | None = None) -> list[dict]:
    """Tool schemas for a trajectory whose rows do not carry them: a known scaffold schema for a
    known name (``known``, default SWE-agent's and OpenHands'), else one inferred from the calls the
    trajectory makes: every argument name seen, typed when all its values share a JSON type, none
    required (the calls show which arguments exist, not which are mandatory)."""
    known = KNOWN_TOOLS if known is None else known
    seen: dict[str, dict[str, set]] = {}
    for name, args in calls:
        props = seen.setdefault(name, {})
        for k, v in (args or {}).items():
            props.setdefault(k, set()).add(_JSON_TYPE.get(type(v), "any"))
    out = []
    for name, props in seen.items():
        if name in known:
            out.append(known[name])
            continue
        schema = {k: ({"type": next(iter(t))} if len(t) == 1 and "any" not in t else {}) for k, t in props.items()}
        out.append(_fn(name, "A tool of the trajectory's scaffold (schema inferred from its calls).", schema, []))
    return out
