"""One duel shaped for its page: the task, the history, the move being judged, both answers at the
positions drawn for this showing, the patch, the judges and the verdict.

Texts are :class:`.text.Clipped` or ``(piece, is_evidence)`` lists; nothing is markup.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import METRICS
from . import text
from .labels import opponent_of
from .reading import DuelRows
from .turns import side


@dataclass
class AnswerView:
    position: str  # A or B
    role: str  # challenger, king or reference
    pieces: list[tuple[str, bool]]  # content, leak evidence flagged
    hidden: int = 0  # content characters not shown
    tool_calls: list[dict] = field(default_factory=list)  # name, arguments as [(piece, is_evidence)], id
    reasoning: text.Clipped | None = None
    format_ok: bool | None = None
    format_reason: str | None = None
    leak_suspect: bool = False
    evidence: list[str] = field(default_factory=list)
    model: str | None = None
    error: str | None = None

    @property
    def empty(self) -> bool:
        return not self.pieces and not self.tool_calls


def _message(m: dict, first_user: bool, protocol: str | None) -> dict:
    role = str(m.get("role") or "?")
    shown = role
    if role == "user" and not first_user and protocol != "tool_calls":
        shown = "observation"  # a shell agent's observations come back as user messages
    elif role == "tool":
        shown = "tool result"
    return {"role": role, "shown_role": shown, "content": text.clip(m.get("content") if isinstance(m.get("content"), str)
                                                                     else str(m.get("content") or "")),
            "tool_calls": [{**c, "arguments": text.clip(c["arguments"], fold=None)} for c in text.tool_calls(m.get("tool_calls"))],
            "tool_call_id": m.get("tool_call_id"), "name": m.get("name")}


def history_view(history: list[dict], protocol: str | None) -> tuple[dict | None, list[dict]]:
    """(the task: the first user message, every message shaped for the page)."""
    out, task, seen_user = [], None, False
    for m in history or []:
        first = m.get("role") == "user" and not seen_user
        seen_user = seen_user or m.get("role") == "user"
        view = _message(m, first, protocol)
        if first:
            task = {**view, "content": text.clip(view["content"].head + view["content"].rest, fold=4_000, lines=12)}
        out.append(view)
    return task, out


def answer_view(rows: DuelRows, role: str, position: str) -> AnswerView:
    if role == "reference":
        ref = (rows.turn or {}).get("reference") or {}
        src: dict = {"content": ref.get("content"), "tool_calls": ref.get("tool_calls"), "model": "the dataset's own step"}
    else:
        src = (rows.challenger if role == "challenger" else rows.king) or {}
    evidence = [e for e in (src.get("leak_evidence") or []) if isinstance(e, str)] if role == "challenger" else []
    content = src.get("content") or ""
    calls = [{**c, "arguments": text.marked(c["arguments"][:text.SHOWN_CHARS], evidence)}
             for c in text.tool_calls(src.get("tool_calls"))]
    return AnswerView(
        position=position, role=role, pieces=text.marked(content[:text.SHOWN_CHARS], evidence),
        hidden=max(0, len(content) - text.SHOWN_CHARS), tool_calls=calls,
        reasoning=text.clip(src.get("reasoning"), fold=0) if src.get("reasoning") else None,
        format_ok=src.get("format_ok"), format_reason=src.get("format_reason"),
        leak_suspect=bool(src.get("leak_suspect")), evidence=evidence,
        model=src.get("served_model") or src.get("model"),
        error=(f"{src.get('error_kind')}: {src.get('error')}" if src.get("error") else None))


def judge_views(rows: DuelRows, positions: dict[str, str]) -> list[dict]:
    """Each judge x order: per-metric scores at the positions shown, the winner, the reason."""
    at = {"challenger": positions["challenger"], "opponent": positions["opponent"]}
    orders = {"king_first": f"{opponent_of(rows)} first", "challenger_first": "challenger first"}
    out = []
    for j in rows.judges:
        skipped = j.get("error_kind") == "skipped"
        scores = {m: {at["challenger"]: j.get(f"{m}_challenger"), at["opponent"]: j.get(f"{m}_opponent")}
                  for m in METRICS} if j.get("parsed") else {}
        winner = j.get("winner")
        out.append({
            "judge": j.get("judge"), "order": orders.get(str(j.get("order")), str(j.get("order"))),
            "parsed": bool(j.get("parsed")), "skipped": skipped, "scores": scores,
            "winner": at.get(winner, "tie" if winner == "tie" else None) if winner else None,
            "winner_role": winner, "reason": text.clip(j.get("reason"), fold=600),
            "problem": None if j.get("parsed") or skipped else (j.get("parse_error") or j.get("error") or "did not parse"),
            "raw": text.clip(j.get("raw_reply"), fold=0) if not j.get("parsed") and not skipped else None,
        })
    return out


def verdict_view(rows: DuelRows, thresholds: dict[str, float], positions: dict[str, str]) -> dict | None:
    v = rows.verdict
    if not v:
        return None
    score = v.get("score")
    return {
        "score": score, "bucket": v.get("bucket"), "note": v.get("bucket_note"), "parsed": v.get("parsed"),
        "unparsed_reason": v.get("unparsed_reason"), "excluded_reason": v.get("excluded_reason"),
        "judges": f"{v.get('judges_parsed')}/{v.get('judges_total')}" if v.get("judges_total") is not None else None,
        "winner": positions.get(side(score) or "", "tie") if score is not None else None,
        "per_metric": [(m, v.get(f"{m}_win")) for m in METRICS],
        "per_judge": [(j, s, positions.get(side(s) or "", "tie")) for j, s in sorted((v.get("per_judge") or {}).items())],
        "thresholds": thresholds,
    }


def duel_view(key: str, rows: DuelRows, a_role: str, thresholds: dict[str, float]) -> dict:
    """The page's content. ``a_role`` is the role shown at position A (the other is at B)."""
    opponent = opponent_of(rows)
    b_role = opponent if a_role == "challenger" else "challenger"
    positions = {"challenger": "A" if a_role == "challenger" else "B", "opponent": "A" if a_role != "challenger" else "B",
                 "tie": "tie"}
    turn = rows.turn or {}
    task, history = history_view(turn.get("history") or [], turn.get("protocol"))
    pr = rows.pr_record or {}
    diff, diff_hidden = text.diff_lines(pr.get("patch"))
    return {
        "key": key, "turn": turn, "turn_id": turn.get("turn_id"), "task": task, "history": history,
        "last": history[-1] if history else None, "opponent": opponent,
        "last_is_task": bool(history) and history[-1]["role"] == "user" and sum(m["role"] == "user" for m in history) == 1,
        "reference": answer_view(rows, "reference", "reference") if opponent != "reference" and turn.get("reference") else None,
        "answers": [answer_view(rows, a_role, "A"), answer_view(rows, b_role, "B")],
        "pr": pr if pr and not pr.get("missing") else None, "diff": diff, "diff_hidden": diff_hidden,
        "problem": text.clip(pr.get("problem_statement"), fold=3_000),
        "judges": judge_views(rows, positions), "verdict": verdict_view(rows, thresholds, positions),
    }
