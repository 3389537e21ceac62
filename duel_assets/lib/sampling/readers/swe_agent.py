"""SWE-agent family: raw SERA rows, SWE-agent ``.traj`` files and SWE-smith runs.

SWE-agent writes its actions in one of four styles, all read here:

* function calling (SWE-agent 1.x, SERA, SWE-smith ``tool`` runs): assistant ``tool_calls``;
* XML (``<function=bash>\\n<parameter=command>ls</parameter>\\n</function>``, SWE-smith ``xml``):
  the block becomes the same OpenAI tool call, the text before it the thought, and the observation
  that follows it the tool reply;
* text / "ticks" (SWE-agent 0.x, SWE-smith ``ticks``): a discussion, then the command in the last
  plain ```` ``` ```` block. The command is a line of SWE-agent's shell, so the block is re-fenced
  ```` ```bash ```` and the turn follows the ``bash_block`` protocol; the command is unchanged;
* XML command (SWE-agent 0.x ``xml_thought_action``): a discussion, then the command between the
  last ``<command>`` and ``</command>``. As SWE-agent's own parser reads it, that command (stripped)
  becomes the message's ```` ```bash ```` block, the text around it staying as it was; an assistant
  message without the block takes the command from its ``action`` field, else from the matching
  ``trajectory[i].action``. The turn follows the ``bash_block`` protocol.

Rows without tool schemas get SWE-agent's for its known tools and, for other tools the
trajectory calls, a schema inferred from those calls (:func:`scaffolds.tools_from_calls`).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ...turn import BadRecord, Trajectory
from .common import (
    chat_messages,
    decode_messages,
    digest,
    ends_with_submit,
    optional_str,
    outcome_of,
    require_assistant,
    require_object,
    require_str,
    split_parallel_calls,
    tool_specs,
)
from .provenance import HIDDEN_ROW_KEYS, hidden_of, license_of, reward_of, source_meta
from .scaffolds import SWE_AGENT_TOOLS, tools_from_calls

_XML_CALL = re.compile(r"<function=([\w.-]+)>(.*?)</function>", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([\w.-]+)>(.*?)</parameter>", re.DOTALL)
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
_OPEN_COMMAND, _CLOSE_COMMAND = "<command>", "</command>"
_DEFAULT_ENVIRONMENTS = ("main", "swe_main")  # SWE-agent's default environment names, not instance ids


def read_sera(row: Any) -> Trajectory:
    """Raw SERA rows (SWE-agent function calling): ``messages`` a JSON string; assistant messages
    carry ``thought`` / ``action`` / ``tool_calls``; tool replies name their call in ``tool_call_ids``;
    the tool specs are not in the row (SWE-agent's are used). ``target_patch`` and
    ``problem_statement`` are the turn's hidden information; ``func_name``, ``teacher``,
    ``rollout``, ``line_level_recall``, ... travel in ``source_meta``."""
    row = require_object(row)
    instance_id = require_str(row, "instance_id")
    skips: Counter = Counter()
    messages = require_assistant(split_parallel_calls(chat_messages(decode_messages(row.get("messages")), skips)))
    return Trajectory(
        traj_id=f"{instance_id}-{digest(messages)}", instance_id=instance_id, repo=optional_str(row, "repo"),
        source="sera", protocol="tool_calls", messages=messages, tools=tool_specs(row.get("tools"), SWE_AGENT_TOOLS),
        outcome="submitted" if ends_with_submit(messages) else "incomplete",
        reward=reward_of(row), license=license_of(row), hidden=hidden_of(row, optional_str(row, "repo")), skips=skips,
        source_meta=source_meta(row, ("instance_id", "repo", "messages", "tools", "license", "reward", *HIDDEN_ROW_KEYS)),
    )


def _replay_instance_id(row: dict) -> str | None:
    rc = row.get("replay_config")
    if isinstance(rc, str):
        try:
            rc = json.loads(rc)
        except json.JSONDecodeError:
            return None
    ps = rc.get("problem_statement") if isinstance(rc, dict) else None
    pid = ps.get("id") if isinstance(ps, dict) else None
    return pid if isinstance(pid, str) and pid else None


def swe_agent_instance_id(row: dict) -> str:
    """From the row, else ``replay_config.problem_statement.id``, else ``environment`` (unless it is
    one of SWE-agent's default names), else the file name the loader put in ``_instance_id``."""
    env = row.get("environment")
    env = env if isinstance(env, str) and env and env not in _DEFAULT_ENVIRONMENTS else None
    for v in (row.get("instance_id"), _replay_instance_id(row), env, row.get("_instance_id")):
        if isinstance(v, str) and v:
            return v
    raise BadRecord("missing_instance_id")


def _coerce(value: str, schema: dict) -> Any:
    """An XML parameter (always text) as the type its schema asks for, when it parses as one."""
    typ = schema.get("type") if isinstance(schema, dict) else None
    try:
        if typ == "integer":
            return int(value.strip())
        if typ == "number":
            return float(value.strip())
        if typ in ("array", "object", "boolean"):
            return json.loads(value)
    except (ValueError, json.JSONDecodeError):
        pass
    return value


def _xml_to_tool_calls(messages: list[dict]) -> list[dict]:
    """Assistant messages holding exactly one ``<function=...>`` block become tool calls; the
    message after each becomes its tool reply. Others stay text (their step is skipped later)."""
    params_of = {t["function"]["name"]: t["function"]["parameters"].get("properties", {}) for t in SWE_AGENT_TOOLS}
    out: list[dict] = []
    pending_id = None
    for i, m in enumerate(messages):
        if pending_id and m["role"] in ("user", "tool"):
            out.append({"role": "tool", "content": m["content"], "tool_call_id": pending_id})
            pending_id = None
            continue
        pending_id = None
        calls = _XML_CALL.findall(m["content"]) if m["role"] == "assistant" else []
        if len(calls) != 1:
            out.append(m)
            continue
        name, body = calls[0]
        props = params_of.get(name, {})
        args = {}
        for p, v in _XML_PARAM.findall(body):
            v = v[1:] if v.startswith("\n") else v
            v = v[:-1] if v.endswith("\n") else v
            args[p] = _coerce(v, props.get(p, {}))
        pending_id = f"call_{i}"
        thought = m["content"][: m["content"].index("<function=")].strip()
        out.append({"role": "assistant", "content": thought, "tool_calls": [{
            "id": pending_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}]})
    return out


def _refence_ticks(messages: list[dict]) -> list[dict]:
    """Text style: the last fenced block of an assistant message is its action; a plain fence is
    re-labelled ```bash (SWE-agent runs the command in its shell)."""
    out = []
    for m in messages:
        blocks = list(_FENCE.finditer(m["content"])) if m["role"] == "assistant" else []
        if blocks and not blocks[-1].group(1).strip():
            b = blocks[-1]
            m = {**m, "content": m["content"][: b.start()] + "```bash\n" + m["content"][b.start(2):]}
        out.append(m)
    return out


def _command_block(content: str) -> tuple[int, int] | None:
    """Where the last ``<command>`` ... last ``</command>`` block is, as SWE-agent's parser finds it."""
    a, b = content.rfind(_OPEN_COMMAND), content.rfind(_CLOSE_COMMAND)
    return (a, b + len(_CLOSE_COMMAND)) if 0 <= a < b else None


def _step_actions(raw: list, row: dict) -> list[str | None]:
    """Each assistant message's ``action`` field, else the matching ``trajectory[i].action`` (when
    the trajectory has one step per assistant message)."""
    own = [m.get("action") for m in raw if isinstance(m, dict) and m.get("role") == "assistant"]
    steps = row.get("trajectory")
    steps = steps if isinstance(steps, list) else []
    if len(steps) == len(own):
        own = [a if isinstance(a, str) and a.strip() else (s.get("action") if isinstance(s, dict) else None)
               for a, s in zip(own, steps)]
    return [a if isinstance(a, str) and a.strip() else None for a in own]


def _commands_to_blocks(messages: list[dict], actions: list[str | None]) -> list[dict]:
    """XML-command style: each assistant message's command as its ```bash block."""
    out, k = [], 0
    for m in messages:
        if m["role"] != "assistant":
            out.append(m)
            continue
        action = actions[k] if k < len(actions) else None
        k += 1
        content = m["content"]
        span = _command_block(content)
        if span is not None:
            a, b = span
            command = content[a + len(_OPEN_COMMAND): b - len(_CLOSE_COMMAND)].strip()
            before = content[:a].rstrip()
            content = before + ("\n\n" if before else "") + f"```bash\n{command}\n```" + content[b:]
        elif action is not None:
            content = content.rstrip() + ("\n\n" if content.strip() else "") + f"```bash\n{action.strip()}\n```"
        else:
            out.append(m)
            continue
        out.append({**m, "content": content})
    return out


def _arguments(msg: dict) -> tuple[str, dict]:
    fn = msg["tool_calls"][0]["function"]
    try:
        args = json.loads(fn["arguments"])
    except json.JSONDecodeError:
        args = {}
    return fn["name"], args if isinstance(args, dict) else {}


def read_swe_agent(row: Any) -> Trajectory:
    """A SWE-agent ``.traj`` file (``history`` / ``trajectory`` / ``info`` / ``replay_config`` /
    ``environment``; SWE-agent 0.x and 1.x, SWE-smith runs) or a row with ``messages`` (the
    SWE-smith trajectories dataset). ``info`` fields (exit status, versions, model stats) travel in
    ``source_meta``; the agent's own submission does not."""
    row = require_object(row)
    raw = row.get("history") if row.get("history") is not None else row.get("messages")
    if raw is None:
        raise BadRecord("missing_history")
    instance_id = swe_agent_instance_id(row)
    skips: Counter = Counter()
    raw = decode_messages(raw)
    messages = require_assistant(chat_messages(raw, skips))
    assistant = [m for m in messages if m["role"] == "assistant"]
    if any(m.get("tool_calls") for m in assistant):
        style = "function_calling"
        messages = split_parallel_calls(messages)
    elif any("<function=" in m["content"] for m in assistant):
        style, messages = "xml", _xml_to_tool_calls(messages)
    elif any(_command_block(m["content"]) for m in assistant):
        style, messages = "xml_command", _commands_to_blocks(messages, _step_actions(raw, row))
    else:
        style, messages = "text", _refence_ticks(messages)
    protocol = "bash_block" if style in ("text", "xml_command") else "tool_calls"
    tools = None
    if protocol == "tool_calls":
        calls = [_arguments(m) for m in messages if m.get("tool_calls")]
        tools = tool_specs(row.get("tools"), None) or tools_from_calls(calls)
    info = row.get("info") if isinstance(row.get("info"), dict) else {}
    exit_status = info.get("exit_status") or row.get("exit_status")
    repo = optional_str(row, "repo")
    meta_extra = {"action_style": style, **{k: v for k, v in info.items() if k not in ("submission",)}}
    return Trajectory(
        traj_id=f"{instance_id}-{digest(messages)}", instance_id=instance_id, repo=repo, source="swe_agent",
        protocol=protocol, messages=messages, tools=tools,
        outcome=outcome_of(exit_status) if exit_status else ("submitted" if ends_with_submit(messages) else "unknown"),
        reward=reward_of(row), license=license_of(row), hidden=hidden_of(row, repo), skips=skips,
        source_meta=source_meta(row, ("instance_id", "repo", "history", "messages", "trajectory", "replay_config", "info",
                                      "tools", "license", "reward", *HIDDEN_ROW_KEYS), meta_extra),
    )
