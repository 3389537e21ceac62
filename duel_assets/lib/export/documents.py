"""One JSON document per exported turn, under ``<bucket>/<key>/``."""
from __future__ import annotations

import pandas as pd

from .. import tables
from ..settings import BUCKETS, METRICS, Paths
from ..system.files import write_json_atomic
from ..turn import DOCUMENT_FIELDS
from .paths import partition_files

ANSWER_FIELDS = ("model", "served_model", "standin", "content", "reasoning", "tool_calls", "action", "format_ok",
                 "format_reason", "leak_suspect", "leak_evidence")


def _answer(row: dict | None) -> dict | None:
    if not row:
        return None
    return {k: row.get(k) for k in ANSWER_FIELDS if k in row}


def export_records(turns_df: pd.DataFrame, king_df: pd.DataFrame, chal_df: pd.DataFrame, judge_df: pd.DataFrame,
                   verdict_df: pd.DataFrame, key: str) -> list[dict]:
    """One export document per turn that has a bucket (parsed and not excluded): the turn, both
    answers, score, breakdown and the judges' reasons."""
    turns = tables.by_turn("sampled_turns", turns_df)
    kings = tables.by_turn("king_answers", king_df)
    chals = tables.by_turn("challenger_answers", chal_df)
    reasons: dict[str, list] = {}
    for r in tables.records("judge_scores", judge_df):
        if r.get("parsed"):
            reasons.setdefault(r["turn_id"], []).append({"judge": r["judge"], "order": r["order"], "reason": r.get("reason")})
    out = []
    for v in tables.records("duel_verdict", verdict_df):
        if not v.get("parsed") or not v.get("bucket") or v.get("excluded_reason"):
            continue
        tid = v["turn_id"]
        t = turns.get(tid, {})
        doc = {
            "prompt_file": key, "turn_id": tid, "bucket": v["bucket"], "bucket_note": v.get("bucket_note"),
            "score": v["score"], "opponent": v.get("opponent"),
            "per_metric": {m: v.get(f"{m}_win") for m in METRICS},
            "per_judge": v.get("per_judge") or {},
            "turn": {k: t.get(k) for k in DOCUMENT_FIELDS},
            "king": _answer(kings.get(tid)),
            "challenger": _answer(chals.get(tid)),
            "judge_reasons": reasons.get(tid, []),
        }
        out.append({"turn_id": tid, "bucket": v["bucket"], "score": v["score"], "document": doc})
    return out


def clear_documents(paths: Paths, key: str) -> int:
    """Remove this partition's export documents: the files in its own ``<bucket>/<key>/`` folders."""
    files = partition_files(paths, key)
    n = 0
    for b in BUCKETS:
        d = files.bucket_dir(b)
        if d.is_dir():
            for f in d.iterdir():
                if f.is_file() and f.suffix == ".json":
                    f.unlink()
                    n += 1
    return n


def write_documents(paths: Paths, key: str, records: list[dict]) -> list[dict]:
    """Replace this partition's export documents; returns the ``exported_buckets`` rows."""
    files = partition_files(paths, key)
    clear_documents(paths, key)
    rows = []
    for rec in records:
        p = files.document(rec["bucket"], rec["turn_id"])
        write_json_atomic(p, rec["document"])
        rows.append({"turn_id": rec["turn_id"], "bucket": rec["bucket"], "score": rec["score"], "path": str(p)})
    return rows


LINEAGE_SQL = """SELECT s.turn_id, s.instance_id, s.source, k.action AS king_action, c.action AS challenger_action,
       c.leak_suspect, v.score, v.bucket, v.excluded_reason, e.path
FROM duel.sampled_turns s
JOIN duel.king_answers k USING (prompt_file, turn_id)
JOIN duel.challenger_answers c USING (prompt_file, turn_id)
JOIN duel.duel_verdict v USING (prompt_file, turn_id)
LEFT JOIN duel.exported_buckets e USING (prompt_file, turn_id)
WHERE prompt_file = '{key}'  -- and turn_id = '...'; judge_scores has one row per judge and order"""


def lineage_markdown(key: str, rows: list[dict], limit: int = 20) -> str:
    """How to follow a turn across the seven tables, and where this partition's turns went."""
    lines = ["Every table but pr_records (prompt_file, instance_id) is keyed by (prompt_file, turn_id). Follow a turn with:", "", "```sql",
             LINEAGE_SQL.format(key=key), "```", "", "| turn_id | score | bucket | file |", "|---|---:|---|---|"]
    for r in rows[:limit]:
        score = "-" if r.get("score") is None else f"{r['score']:.1f}"
        lines.append(f"| {r['turn_id']} | {score} | {r.get('bucket')} | {r.get('path') or '-'} |")
    if len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more | | | |")
    return "\n".join(lines)
