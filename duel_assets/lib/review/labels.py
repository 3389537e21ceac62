"""Labels given on the review page, as labelled-duel lines ``duel-assets calibrate`` reads as they are.

A label says which of the two answers shown is better (``A``, ``B`` or ``tie``), optionally for one
metric. The page draws the positions at random for every showing, so a line's ``a`` is whichever
answer was shown as A: the record keeps the turn's history, tools and PR record, both answers in the
order shown, the label, and beside them (kept by ``calibrate`` as extra keys) who labelled and when,
which role stood at each position (``positions``), the partition and turn, and the turn's bucket and
score. Before a line is written it is read back with the calibration reader, so a line the judges
could not be run on (a history longer than a calibration pair may be, say) is refused with the
reader's reason instead of being written and skipped later.

Lines are appended to the labels file with one ``write`` of the whole line on a descriptor opened
``O_APPEND``, then ``fsync``: two pages appending to one file do not interleave, and a label the page
confirmed is on disk. A last line left unfinished (a crash mid-write) is closed with a newline before
the next one, so it costs only itself (``calibrate`` skips it as not JSON). A turn is labelled once
per file (its ``id`` is ``<partition>/<turn>``).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..calibration.pairs import BadPair, parse_pair
from ..settings import METRICS
from ..turn import visible
from .reading import DuelRows

LABELS = ("A", "B", "tie")
KIND = "review"


class LabelRefused(ValueError):
    """The label cannot be recorded; the message says why, in the calibration reader's words."""


@dataclass(frozen=True)
class Label:
    label: str  # A, B or tie: of the answers as shown
    a_role: str  # "challenger" or the opponent ("king", or "reference" in DUEL_MODE 1) shown as A
    metric: str | None = None

    def __post_init__(self):
        if self.label not in LABELS:
            raise LabelRefused(f"label: got {self.label!r}; allowed: {', '.join(LABELS)}")
        if self.metric is not None and self.metric not in METRICS:
            raise LabelRefused(f"metric: got {self.metric!r}; allowed: {', '.join(METRICS)} or none")


def pair_id(key: str, turn_id: str) -> str:
    return f"{key}/{turn_id}"


def opponent_of(rows: DuelRows) -> str:
    """``king``, or ``reference`` when the challenger was dueled against the dataset's own step."""
    for r in (rows.verdict, *rows.judges):
        if r and r.get("opponent"):
            return str(r["opponent"])
    return "king"


def answer_message(rows: DuelRows, role: str) -> dict:
    """An answer as an assistant message (``content`` and, when it made any, ``tool_calls``)."""
    if role == "reference":
        ref = (rows.turn or {}).get("reference") or {}
        src = {"content": ref.get("content"), "tool_calls": ref.get("tool_calls")}
    else:
        src = (rows.challenger if role == "challenger" else rows.king) or {}
    msg: dict = {"content": src.get("content") or ""}
    if src.get("tool_calls"):
        msg["tool_calls"] = src["tool_calls"]
    return msg


def pr_record(rows: DuelRows) -> dict | None:
    """The hidden record as the judges see it (as ``make-calibration`` attaches it), or None."""
    pr = rows.pr_record
    if not pr or pr.get("missing"):
        return None
    files = pr.get("changed_files") or "[]"
    try:
        files = json.loads(files) if isinstance(files, str) else list(files)
    except ValueError:
        files = []
    return {"repo": pr.get("repo"), "problem_statement": pr.get("problem_statement") or "",
            "pr_description": pr.get("pr_description") or "", "patch": pr.get("patch") or "", "changed_files": files}


def record(key: str, rows: DuelRows, label: Label, reviewer: str, at: datetime | None = None) -> dict:
    """The labelled-duel line for this turn, checked by the calibration reader (:class:`LabelRefused`)."""
    if rows.turn is None:
        raise LabelRefused("the turn is not in sampled_turns: nothing to label")
    opponent = opponent_of(rows)
    if label.a_role not in ("challenger", opponent):
        raise LabelRefused(f"positions: got {label.a_role!r} as A; allowed: challenger or {opponent}")
    b_role = opponent if label.a_role == "challenger" else "challenger"
    at = at or datetime.now(timezone.utc)
    verdict = rows.verdict or {}
    rec: dict = {
        "id": pair_id(key, rows.turn["turn_id"]), "kind": KIND,
        "history": [visible(m) for m in rows.turn.get("history") or []],
        "tools": rows.turn.get("tools") or None,
        "a": answer_message(rows, label.a_role), "b": answer_message(rows, b_role), "label": label.label,
        **({"metric_labels": {label.metric: label.label}} if label.metric else {}),
        **({"pr_record": pr} if (pr := pr_record(rows)) else {}),
        "reviewer": reviewer, "labelled_at": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "positions": {"A": label.a_role, "B": b_role},
        "better": "tie" if label.label == "tie" else (label.a_role if label.label == "A" else b_role),
        "prompt_file": key, "turn_id": rows.turn["turn_id"], "instance_id": rows.turn.get("instance_id"),
        "bucket": verdict.get("bucket"), "score": verdict.get("score"),
    }
    if rec["tools"] is None:
        del rec["tools"]
    try:
        parse_pair(json.loads(json.dumps(rec, ensure_ascii=False)), 0)
    except BadPair as e:
        raise LabelRefused(f"not a usable calibration pair ({e}): label not recorded") from None
    return rec


class LabelsFile:
    """The append-only labels file of one reviewer or sitting; knows which turns it already holds."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._ids: set[str] | None = None

    def ids(self) -> set[str]:
        """The pair ids of the lines already in the file (lines that are not JSON objects are ignored)."""
        with self._lock:
            if self._ids is None:
                self._ids = set()
                if self.path.is_file():
                    with open(self.path, "rb") as f:
                        for line in f:
                            try:
                                obj = json.loads(line)
                            except ValueError:
                                continue
                            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                                self._ids.add(obj["id"])
            return set(self._ids)

    def labelled(self, key: str) -> set[str]:
        """Turn ids of partition ``key`` labelled in this file."""
        prefix = f"{key}/"
        return {i[len(prefix):] for i in self.ids() if i.startswith(prefix)}

    def append(self, rec: dict) -> bool:
        """Write ``rec`` as one line; False (nothing written) when its id is already in the file."""
        data = (json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        self.ids()
        with self._lock:
            assert self._ids is not None
            if rec["id"] in self._ids:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                written = os.write(fd, data)
                if written != len(data):  # a full disk: never leave half a line behind silently
                    raise OSError(f"{self.path}: wrote {written} of {len(data)} bytes of a label line")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._ids.add(rec["id"])
            return True

    def count(self) -> int:
        return len(self.ids())
