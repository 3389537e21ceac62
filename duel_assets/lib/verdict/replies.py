"""Judge replies: parsing one, its scores as the challenger's and the opponent's, and the
challenger's per-metric margins.

A judge reply parses when all five metrics carry integer scores 0-10 for both A and B; which of A
and B is the challenger depends on the order the answers were shown in.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..settings import METRICS

KING_FIRST = "king_first"
CHALLENGER_FIRST = "challenger_first"


@dataclass
class JudgeReply:
    parsed: bool
    scores: dict[str, dict[str, int]] | None = None  # metric -> {"A": int, "B": int}
    winner: str | None = None
    reason: str = ""
    error: str | None = None


def _json_candidates(text: str):
    """Yield JSON object substrings: fenced blocks first, then balanced {...} spans."""
    for m in re.finditer(r"```(?:json)?\s*\n?(.*?)```", text, re.DOTALL):
        yield m.group(1).strip()
    depth, start, in_str, esc = 0, None, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                yield text[start : i + 1]


def parse_judge_reply(text: str | None) -> JudgeReply:
    if not text or not text.strip():
        return JudgeReply(False, error="empty reply")
    body = re.sub(r"(?is)<think>.*?</think>", "", text)
    if "<think>" in body.lower():  # unclosed think: a truncated reply, keep what follows nothing
        body = body[: body.lower().index("<think>")]
    last_error = "JSON object is unterminated (truncated reply?)" if "{" in body else "no JSON object found"
    for cand in _json_candidates(body):
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            last_error = "JSON did not decode (truncated, or nested too deeply?)"
            continue
        if not isinstance(obj, dict) or "scores" not in obj:
            last_error = "JSON has no 'scores'"
            continue
        scores, err = _validate_scores(obj["scores"])
        if err:
            return JudgeReply(False, error=err)
        winner = obj.get("winner")
        winner = winner if winner in ("A", "B", "tie") else None
        return JudgeReply(True, scores=scores, winner=winner, reason=str(obj.get("reason") or "")[:2000])
    return JudgeReply(False, error=last_error)


def _validate_scores(raw) -> tuple[dict | None, str | None]:
    if not isinstance(raw, dict):
        return None, "'scores' is not an object"
    out = {}
    for m in METRICS:
        cell = raw.get(m)
        if not isinstance(cell, dict):
            return None, f"metric '{m}' missing"
        pair = {}
        for side in ("A", "B"):
            v = cell.get(side)
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                return None, f"'{m}'.{side} is not an integer"
            v = int(v)
            if not 0 <= v <= 10:
                return None, f"'{m}'.{side}={v} out of range 0-10"
            pair[side] = v
        out[m] = pair
    return out, None


def sides(order: str) -> tuple[str, str]:
    """(challenger's label, opponent's label) in a judgement of this order."""
    return ("B", "A") if order == KING_FIRST else ("A", "B")


def side_scores(reply: JudgeReply, order: str) -> dict[str, int]:
    """A parsed judgement as judge_scores columns: ``<metric>_challenger`` and ``<metric>_opponent``."""
    assert reply.scores is not None, "side_scores of a reply that did not parse"
    c, o = sides(order)
    out = {}
    for m in METRICS:
        out[f"{m}_challenger"] = reply.scores[m][c]
        out[f"{m}_opponent"] = reply.scores[m][o]
    return out


def row_margins(row: dict) -> dict[str, int] | None:
    """Per-metric challenger minus opponent score of one judgement (a judge_scores row, or the
    :func:`side_scores` of a reply); None when it did not parse. The one margin rule."""
    if not row.get("parsed"):
        return None
    return {m: int(row[f"{m}_challenger"]) - int(row[f"{m}_opponent"]) for m in METRICS}


def challenger_margins(reply: JudgeReply, order: str) -> dict[str, int] | None:
    """:func:`row_margins` of a reply judged in ``order``."""
    if not reply.parsed or reply.scores is None:
        return None
    return row_margins({"parsed": True, **side_scores(reply, order)})
