"""Column schemas of the seven tables (DuckDB types). No Dagster imports.

The IO manager creates each table from its schema (so an empty partition still yields a typed
table), adds columns a newer version declares, and inserts by name (never by position).
"""
from __future__ import annotations

import pandas as pd

from .settings import METRICS

_ANSWER = [
    ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("instance_id", "VARCHAR"), ("role", "VARCHAR"),
    ("opponent", "VARCHAR"), ("model", "VARCHAR"), ("sample_index", "INTEGER"), ("content", "VARCHAR"),
    ("reasoning", "VARCHAR"), ("tool_calls", "VARCHAR"), ("action", "VARCHAR"), ("format_ok", "BOOLEAN"),
    ("format_reason", "VARCHAR"), ("finish_reason", "VARCHAR"), ("prompt_tokens", "BIGINT"),
    ("completion_tokens", "BIGINT"), ("usage", "VARCHAR"), ("cached", "BOOLEAN"), ("attempts", "INTEGER"),
    ("call_key", "VARCHAR"), ("error_kind", "VARCHAR"), ("error", "VARCHAR"),
]

SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "sampled_turns": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("instance_id", "VARCHAR"), ("repo", "VARCHAR"),
        ("source", "VARCHAR"), ("traj_id", "VARCHAR"), ("step", "INTEGER"), ("protocol", "VARCHAR"),
        ("history", "VARCHAR"), ("reference", "VARCHAR"), ("tools", "VARCHAR"), ("outcome", "VARCHAR"),
        ("trimmed", "BOOLEAN"), ("history_messages", "INTEGER"), ("history_chars", "BIGINT"),
    ],
    "pr_records": [
        ("prompt_file", "VARCHAR"), ("instance_id", "VARCHAR"), ("repo", "VARCHAR"), ("base_commit", "VARCHAR"),
        ("problem_statement", "VARCHAR"), ("pr_description", "VARCHAR"), ("patch", "VARCHAR"),
        ("changed_files", "VARCHAR"), ("missing", "BOOLEAN"),
    ],
    "king_answers": _ANSWER,
    "challenger_answers": _ANSWER + [("leak_suspect", "BOOLEAN"), ("leak_evidence", "VARCHAR")],
    "judge_scores": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("judge", "VARCHAR"), ("order", "VARCHAR"),
        ("opponent", "VARCHAR"), ("parsed", "BOOLEAN"), ("parse_error", "VARCHAR"), ("retried", "BOOLEAN"),
        *[(f"{m}_{side}", "INTEGER") for m in METRICS for side in ("challenger", "opponent")],
        ("winner", "VARCHAR"), ("reason", "VARCHAR"), ("raw_reply", "VARCHAR"), ("error_kind", "VARCHAR"),
        ("error", "VARCHAR"), ("prompt_tokens", "BIGINT"), ("completion_tokens", "BIGINT"), ("call_key", "VARCHAR"),
    ],
    "duel_verdict": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("opponent", "VARCHAR"), ("parsed", "BOOLEAN"),
        ("score", "DOUBLE"), ("bucket", "VARCHAR"), ("bucket_note", "VARCHAR"), ("unparsed_reason", "VARCHAR"),
        ("judges_parsed", "INTEGER"), ("judges_total", "INTEGER"),
        *[(f"{m}_win", "DOUBLE") for m in METRICS],
        ("per_judge", "VARCHAR"), ("challenger_format_ok", "BOOLEAN"), ("leak_suspect", "BOOLEAN"),
    ],
    "exported_buckets": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("bucket", "VARCHAR"), ("score", "DOUBLE"),
        ("path", "VARCHAR"),
    ],
}


def columns(table: str) -> list[str]:
    return [c for c, _ in SCHEMAS[table]]


def frame(table: str, rows: list[dict], prompt_file: str) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the table's columns, in order, ``prompt_file`` filled in."""
    cols = columns(table)
    df = pd.DataFrame([{**r, "prompt_file": prompt_file} for r in rows], columns=cols)
    return df[cols]

