"""The labelled-duel format: one JSON object per line.

A pair line holds ``history`` (OpenAI chat messages), optional ``tools`` (function tools), ``a`` and
``b`` (assistant messages: ``content`` and/or ``tool_calls``; a plain string stands for
``{"content": ...}``), ``label`` (``"A"``: ``a`` is better, ``"B"``: ``b`` is better, or
``"tie"``), and optionally ``metric_labels`` (``{metric: "A"|"B"|"tie"}``), ``kind``, ``id`` and
``pr_record`` (the reference the judges see, as in the duel). Other keys are kept as ``meta``.

The first line may be a header record ``{"calibration_set": {...}}`` (kinds, counts, positions).
A line that is not a valid pair is skipped with its line number and reason, never fatal; only a
file that cannot be read at all is an error.

Reading is bounded: the file must be a regular file (a symlink to ``/dev/zero`` or a FIFO is
refused before anything is read) of at most :data:`MAX_FILE_BYTES` and :data:`MAX_LINES` lines,
read one line at a time. A line over :data:`MAX_LINE_BYTES`, a line that is not JSON (``NaN``,
nesting deeper than the parser's stack and lone surrogates included) and a pair whose history,
answer or PR record is longer than what the judges are sent (:data:`MAX_HISTORY_CHARS`,
:data:`MAX_ANSWER_CHARS`, :data:`MAX_PR_RECORD_CHARS`) are skipped with their reason.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sampling.prompt_files import turn_from_record
from ..settings import METRICS
from ..system.bounded import BadJSON, InputRefused, lines, loads, open_regular
from ..system.files import replacing
from ..turn import Turn

HEADER_KEY = "calibration_set"
LABELS = ("A", "B", "tie")
ROLES = ("system", "user", "assistant", "tool")
KNOWN_KEYS = {"id", "kind", "history", "tools", "a", "b", "label", "metric_labels", "pr_record"}
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_LINES = 200_000
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_HISTORY_CHARS = 1_000_000  # a history's messages: text, tool-call arguments
MAX_ANSWER_CHARS = 100_000  # one answer: text and tool-call arguments
MAX_PR_RECORD_CHARS = 200_000  # the PR record as JSON


class CalibrationFileError(ValueError):
    """The file as a whole cannot be used (missing, unreadable, no valid pair)."""


class BadPair(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class LabelledPair:
    id: str
    history: list[dict]
    a: dict
    b: dict
    label: str
    tools: list[dict] | None = None
    metric_labels: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    pr_record: dict | None = None
    meta: dict = field(default_factory=dict)
    line: int = 0

    @property
    def protocol(self) -> str:
        calls = any(m.get("tool_calls") for m in (self.a, self.b, *self.history))
        return "tool_calls" if calls or self.tools else "bash_block"

    def as_turn(self) -> Turn:
        """The pair's history as a duel turn, so the judges get exactly the duel's prompt."""
        return turn_from_record({"turn_id": self.id, "instance_id": str(self.meta.get("instance_id") or self.id),
                                 "source": "calibration", "protocol": self.protocol, "history": self.history,
                                 "reference": {}, "tools": self.tools})

    def to_record(self) -> dict:
        rec: dict = {"id": self.id}
        if self.kind is not None:
            rec["kind"] = self.kind
        rec.update({"history": self.history})
        if self.tools:
            rec["tools"] = self.tools
        rec.update({"a": self.a, "b": self.b, "label": self.label})
        if self.metric_labels:
            rec["metric_labels"] = self.metric_labels
        if self.pr_record:
            rec["pr_record"] = self.pr_record
        rec.update(self.meta)
        return rec


@dataclass
class Skip:
    line: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class CalibrationSet:
    path: Path
    pairs: list[LabelledPair]
    skips: list[Skip]
    header: dict | None = None

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skips))


def _label(value, where: str) -> str:
    if isinstance(value, str):
        v = value.strip()
        if v.upper() in ("A", "B"):
            return v.upper()
        if v.lower() == "tie":
            return "tie"
    raise BadPair(f"invalid_{where}", f"{value!r} is not \"A\", \"B\" or \"tie\"")


def _tool_calls(calls, where: str) -> list[dict]:
    if not isinstance(calls, list):
        raise BadPair(f"invalid_{where}", "tool_calls is not a list")
    out = []
    for i, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadPair(f"invalid_{where}", f"tool call {i} has no function name")
        args = fn.get("arguments", "{}")
        if isinstance(args, (dict, list)):
            args = json.dumps(args, ensure_ascii=False)
        if not isinstance(args, str):
            raise BadPair(f"invalid_{where}", f"tool call {i} arguments are {type(args).__name__}")
        out.append({"id": str(c.get("id") or f"call_{i}"), "type": "function",
                    "function": {"name": fn["name"], "arguments": args}})
    return out


def _answer(value, side: str) -> dict:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if not isinstance(value, dict) or not ("content" in value or "tool_calls" in value):
        raise BadPair(f"invalid_{side}", "expected an assistant message with content and/or tool_calls")
    content = value.get("content")
    if content is not None and not isinstance(content, str):
        raise BadPair(f"invalid_{side}", "content is not a string")
    msg: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if value.get("tool_calls"):
        msg["tool_calls"] = _tool_calls(value["tool_calls"], side)
    return msg


def _history(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise BadPair("invalid_history", "expected a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadPair("invalid_history", f"message {i} has no role among {', '.join(ROLES)}")
        content = m.get("content")
        if isinstance(content, list):  # content parts
            parts = [p.get("text", "") for p in content if isinstance(p, dict)]
            content = "".join(parts) if all(isinstance(p, str) for p in parts) else parts
        if content is not None and not isinstance(content, str):
            raise BadPair("invalid_history", f"message {i} content is {type(content).__name__}")
        msg = {"role": m["role"], "content": content or ""}
        if m["role"] == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _tool_calls(m["tool_calls"], "history")
        if m["role"] == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or f"call_{i}")
        out.append(msg)
    return out


def _tools(value) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadPair("invalid_tools", "expected a list of function tools")
    out = []
    for i, t in enumerate(value):
        fn = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadPair("invalid_tools", f"tool {i} has no function name")
        out.append({"type": "function", "function": fn})
    return out or None


def parse_pair(obj, line: int) -> LabelledPair:
    """One pair from its decoded JSON line, or :class:`BadPair` naming what is wrong."""
    if not isinstance(obj, dict):
        raise BadPair("not_an_object", type(obj).__name__)
    for k in ("history", "a", "b", "label"):
        if k not in obj:
            raise BadPair(f"missing_{k}")
    metric_labels = obj.get("metric_labels") or {}
    if not isinstance(metric_labels, dict):
        raise BadPair("invalid_metric_labels", "expected an object {metric: label}")
    unknown = sorted(set(metric_labels) - set(METRICS))
    if unknown:
        raise BadPair("invalid_metric_labels", f"unknown metric(s) {unknown} (known: {', '.join(METRICS)})")
    pid = obj.get("id", f"line-{line}")
    if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not str(pid).strip():
        raise BadPair("invalid_id", repr(pid))
    kind = obj.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise BadPair("invalid_kind", repr(kind))
    pr = obj.get("pr_record")
    if pr is not None and not isinstance(pr, dict):
        raise BadPair("invalid_pr_record", "expected an object")
    pair = LabelledPair(
        id=str(pid), history=_history(obj["history"]), a=_answer(obj["a"], "a"), b=_answer(obj["b"], "b"),
        label=_label(obj["label"], "label"), tools=_tools(obj.get("tools")),
        metric_labels={m: _label(v, "metric_labels") for m, v in metric_labels.items()},
        kind=kind, pr_record=pr, meta={k: v for k, v in obj.items() if k not in KNOWN_KEYS}, line=line,
    )
    _within_limits(pair)
    return pair


def _chars(messages: list[dict]) -> int:
    return sum(len(m.get("content") or "") + sum(len(c["function"]["arguments"]) for c in m.get("tool_calls") or [])
               for m in messages)


def _within_limits(pair: LabelledPair) -> None:
    """What the judges would be sent stays within the limits (see the module docstring)."""
    for what, size, limit in (("history", _chars(pair.history), MAX_HISTORY_CHARS),
                              ("a", _chars([pair.a]), MAX_ANSWER_CHARS), ("b", _chars([pair.b]), MAX_ANSWER_CHARS),
                              ("pr_record", len(json.dumps(pair.pr_record, ensure_ascii=False)) if pair.pr_record else 0,
                               MAX_PR_RECORD_CHARS)):
        if size > limit:
            raise BadPair(f"{what}_too_long", f"{size} characters, over {limit}")


def _decoded(line: bytes) -> object:
    try:
        return loads(line.decode("utf-8"), allow_nan=False)
    except UnicodeDecodeError as e:
        raise BadPair("non_utf8", f"byte {e.start}") from None
    except BadJSON as e:
        raise BadPair("invalid_json", str(e)[:120]) from None


def read_set(path: Path | str) -> CalibrationSet:
    """Every valid pair of a labelled-duel JSONL file, and every skipped line with its reason."""
    path = Path(path)
    pairs: list[LabelledPair] = []
    skips: list[Skip] = []
    header = None
    seen: set[str] = set()
    first = True
    try:
        fh = open_regular(path, "calibration file", MAX_FILE_BYTES)
    except InputRefused as e:
        raise CalibrationFileError(str(e)) from None
    with fh:
        for n, line in lines(fh, MAX_LINE_BYTES):
            if n > MAX_LINES:
                raise CalibrationFileError(f"calibration file {path} has more than {MAX_LINES} lines: refused")
            if line is not None and not line.strip():
                continue
            was_first, first = first, False
            try:
                if line is None:
                    raise BadPair("line_too_long", f"over {MAX_LINE_BYTES} bytes")
                obj = _decoded(line)
                if isinstance(obj, dict) and HEADER_KEY in obj:
                    if not (was_first and isinstance(obj[HEADER_KEY], dict)):
                        raise BadPair("misplaced_header", "a header record is allowed only on the first line")
                    header = obj[HEADER_KEY]
                    continue
                pair = parse_pair(obj, n)
                if pair.id in seen:
                    raise BadPair("duplicate_id", pair.id)
            except BadPair as e:
                skips.append(Skip(n, e.reason, e.detail))
                continue
            seen.add(pair.id)
            pairs.append(pair)
    return CalibrationSet(path=path, pairs=pairs, skips=skips, header=header)


def write_set(path: Path | str, pairs: list[LabelledPair], header: dict | None = None) -> Path:
    """Writes the set atomically: the header record first (when given), then one pair per line."""
    path = Path(path)
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            if header is not None:
                f.write(json.dumps({HEADER_KEY: header}, ensure_ascii=False) + "\n")
            for p in pairs:
                f.write(json.dumps(p.to_record(), ensure_ascii=False) + "\n")
    return path
