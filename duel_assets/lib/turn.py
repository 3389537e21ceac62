"""The turn every stage passes on: its type, its fields and its identity, and the trajectory shape
the source readers produce (a turn is cut from a trajectory at one assistant step).

A turn is :class:`Turn`; its fields, in the order a record holds them, are :data:`TURN_FIELDS`
(``sampled_turns`` rows and prompt files carry them), of which an export document carries
:data:`DOCUMENT_FIELDS`.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, fields


class BadRecord(ValueError):
    """A source row or a turn record that cannot be read; ``reason`` is a short code that callers
    count (one broken row never sinks the rest)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Trajectory:
    """One source row as a reader returns it: OpenAI chat messages and what the row says about them."""

    traj_id: str
    instance_id: str
    repo: str | None
    source: str
    protocol: str
    messages: list[dict]
    tools: list[dict] | None = None
    outcome: str = "unknown"
    reward: float | None = None
    license: str | None = None
    source_meta: dict = field(default_factory=dict)  # the row's other fields (provenance)
    hidden: dict | None = None  # hidden information the row itself carries (patch, problem statement)
    skips: Counter = field(default_factory=Counter)  # messages dropped while reading, by reason


@dataclass
class Turn:
    """The history up to one assistant step of a trajectory, and that step (the reference answer)."""

    turn_id: str
    instance_id: str
    repo: str | None
    source: str
    traj_id: str
    step: int
    protocol: str
    history: list[dict]
    reference: dict
    tools: list[dict] | None = None
    outcome: str = "unknown"
    trimmed: bool = False
    license: str | None = None
    reward: float | None = None
    source_meta: dict = field(default_factory=dict)
    hidden: dict | None = None
    history_hash: str = ""
    contamination: list[str] | None = None  # <benchmark>:<way> of each benchmark it matches whose policy is tag
    excluded_reason: str | None = None  # contaminated:<benchmark>:<way>: never dueled

    def __post_init__(self):
        if not self.history_hash:
            self.history_hash = history_hash(self.history, self.tools)

    def to_record(self) -> dict:
        rec = {f: getattr(self, f) for f in TURN_FIELDS}  # shallow: histories are shared, not copied
        rec.update({f: getattr(self, f) for f in OPTIONAL_FIELDS if getattr(self, f)})
        return rec


OPTIONAL_FIELDS = ("contamination", "excluded_reason")  # in a record only when set
TURN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Turn) if f.name not in OPTIONAL_FIELDS)
# what an export document carries of its turn, in this order (the turn's id is the document's own;
# its outcome, trimming, hidden information and history hash are not exported)
DOCUMENT_FIELDS: tuple[str, ...] = ("instance_id", "repo", "source", "protocol", "step", "history", "reference", "tools",
                                    "license", "reward", "source_meta", "traj_id", "contamination")


def _canonical_message(m: dict) -> dict:
    out: dict = {"role": m.get("role"), "content": m.get("content") or ""}
    calls = []
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        try:
            args = json.loads(args) if isinstance(args, str) else args
        except json.JSONDecodeError:
            pass
        calls.append({"name": fn.get("name"), "arguments": args})
    if calls:
        out["tool_calls"] = calls
    return out


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _dumps(value) -> bytes:
    return _CANONICAL_JSON.encode(value).encode("utf-8", "surrogatepass")


_SHORT_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t"))
# every byte to 1 but the control characters JSON writes as \u00XX, \b or \f, to 0
_OTHER_CONTROL = bytes(0 if c < 0x20 and c not in b"\t\n\r" else 1 for c in range(256))


def _json_string(s: str) -> bytes:
    """``_dumps(s)`` for a string, escaped on its UTF-8 bytes: the bytes below 0x80 are the ASCII
    characters themselves, so replacing the ones JSON escapes there gives the same bytes, faster than
    the JSON encoder escapes a long text."""
    b = s.encode("utf-8", "surrogatepass")
    if 0 in b.translate(_OTHER_CONTROL):  # rare: left to the encoder
        return _dumps(s)
    for ch, esc in _SHORT_ESCAPES:
        b = b.replace(ch, esc)
    return b'"' + b + b'"'


def _message_json(m: dict) -> bytes:
    """``_dumps(_canonical_message(m))``: its content escaped by :func:`_json_string` ("content"
    sorts before "role" and "tool_calls"), the rest by the encoder."""
    content = m.get("content") or ""
    if not isinstance(content, str):
        return _dumps(_canonical_message(m))
    role = m.get("role")
    tail = _ROLE_TAILS.get(role) if isinstance(role, str) and not m.get("tool_calls") else None
    if tail is None:
        rest = _canonical_message(m)
        del rest["content"]
        tail = b"," + _dumps(rest)[1:]
    return b'{"content":' + _json_string(content) + tail


_ROLE_TAILS = {r: b"," + _dumps({"role": r})[1:] for r in ("system", "user", "assistant", "tool")}


def history_hash(history: list[dict], tools: list[dict] | None) -> str:
    """A turn's identity: sha256 of the canonical JSON of what the models see — the history
    (role, content, tool calls by name and arguments; tool-call ids are per-run noise and left out)
    and the tools: ``{"history":[...],"tools":...}``, keys sorted, no spaces, UTF-8."""
    doc = b'{"history":[' + b",".join(map(_message_json, history)) + b'],"tools":' + _dumps(tools or None) + b"}"
    return hashlib.sha256(doc).hexdigest()


def visible(m: dict) -> dict:
    """A history message as the models get it (reasoning returned apart by a provider is not part of it)."""
    return {k: v for k, v in m.items() if k != "reasoning_content"} if "reasoning_content" in m else m
