"""Column schemas of the seven tables and the one row codec.

The IO manager creates each table from its schema (so an empty partition still yields a typed
table), adds columns a newer version declares, and inserts by name (never by position).

Columns declared ``JSON`` are stored as VARCHAR holding JSON text. Every asset and the export
encode and decode rows here (:func:`frame`, :func:`records`), and turns go to and from rows through
:func:`turn_rows` / :func:`turns_from_frame`; no other module parses these columns.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from .sampling.prompt_files import turn_from_record
from .settings import METRICS
from .turn import Turn

JSON = "JSON"  # logical type: VARCHAR in DuckDB, a Python list/dict in rows

_ANSWER = [
    ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("instance_id", "VARCHAR"), ("role", "VARCHAR"),
    ("opponent", "VARCHAR"), ("model", "VARCHAR"), ("sample_index", "INTEGER"), ("content", "VARCHAR"),
    ("reasoning", "VARCHAR"), ("tool_calls", JSON), ("action", "VARCHAR"), ("format_ok", "BOOLEAN"),
    ("format_reason", "VARCHAR"), ("finish_reason", "VARCHAR"), ("prompt_tokens", "BIGINT"),
    ("completion_tokens", "BIGINT"), ("usage", JSON), ("cached", "BOOLEAN"), ("attempts", "INTEGER"),
    ("call_key", "VARCHAR"), ("error_kind", "VARCHAR"), ("error", "VARCHAR"),
    ("cached_tokens", "BIGINT"), ("excluded_reason", "VARCHAR"), ("served_model", "VARCHAR"), ("standin", "BOOLEAN"),
    ("usage_estimated", "BOOLEAN"),
]

DECLARED: dict[str, list[tuple[str, str]]] = {
    "sampled_turns": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("instance_id", "VARCHAR"), ("repo", "VARCHAR"),
        ("source", "VARCHAR"), ("traj_id", "VARCHAR"), ("step", "INTEGER"), ("protocol", "VARCHAR"),
        ("history", JSON), ("reference", JSON), ("tools", JSON), ("outcome", "VARCHAR"),
        ("trimmed", "BOOLEAN"), ("history_messages", "INTEGER"), ("history_chars", "BIGINT"),
        ("license", "VARCHAR"), ("reward", "DOUBLE"), ("source_meta", JSON), ("hidden", JSON),
        ("history_hash", "VARCHAR"), ("contamination", JSON), ("excluded_reason", "VARCHAR"),
    ],
    "pr_records": [
        ("prompt_file", "VARCHAR"), ("instance_id", "VARCHAR"), ("repo", "VARCHAR"), ("base_commit", "VARCHAR"),
        ("problem_statement", "VARCHAR"), ("pr_description", "VARCHAR"), ("patch", "VARCHAR"),
        ("changed_files", "VARCHAR"), ("missing", "BOOLEAN"), ("record_source", "VARCHAR"),
    ],
    "king_answers": _ANSWER,
    "challenger_answers": _ANSWER + [("leak_suspect", "BOOLEAN"), ("leak_evidence", JSON)],
    "judge_scores": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("judge", "VARCHAR"), ("order", "VARCHAR"),
        ("opponent", "VARCHAR"), ("parsed", "BOOLEAN"), ("parse_error", "VARCHAR"), ("retried", "BOOLEAN"),
        *[(f"{m}_{side}", "INTEGER") for m in METRICS for side in ("challenger", "opponent")],
        ("winner", "VARCHAR"), ("reason", "VARCHAR"), ("raw_reply", "VARCHAR"), ("error_kind", "VARCHAR"),
        ("error", "VARCHAR"), ("prompt_tokens", "BIGINT"), ("completion_tokens", "BIGINT"), ("call_key", "VARCHAR"),
        ("cached_tokens", "BIGINT"), ("served_model", "VARCHAR"), ("standin", "BOOLEAN"), ("usage_estimated", "BOOLEAN"),
        ("reply_format", "VARCHAR"),  # json_schema, json_object (the structured output asked for) or text
    ],
    "duel_verdict": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("opponent", "VARCHAR"), ("parsed", "BOOLEAN"),
        ("score", "DOUBLE"), ("bucket", "VARCHAR"), ("bucket_note", "VARCHAR"), ("unparsed_reason", "VARCHAR"),
        ("excluded_reason", "VARCHAR"), ("judges_parsed", "INTEGER"), ("judges_total", "INTEGER"),
        *[(f"{m}_win", "DOUBLE") for m in METRICS],
        ("per_judge", JSON), ("challenger_format_ok", "BOOLEAN"), ("leak_suspect", "BOOLEAN"),
    ],
    "exported_buckets": [
        ("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("bucket", "VARCHAR"), ("score", "DOUBLE"),
        ("path", "VARCHAR"),
    ],
}

# what DuckDB stores (the IO manager's view)
SCHEMAS: dict[str, list[tuple[str, str]]] = {
    t: [(c, "VARCHAR" if ty == JSON else ty) for c, ty in cols] for t, cols in DECLARED.items()}
JSON_COLUMNS: dict[str, frozenset[str]] = {
    t: frozenset(c for c, ty in cols if ty == JSON) for t, cols in DECLARED.items()}
_INT_COLUMNS: dict[str, frozenset[str]] = {
    t: frozenset(c for c, ty in cols if ty in ("INTEGER", "BIGINT")) for t, cols in DECLARED.items()}


class RowDecodeError(ValueError):
    """A JSON column holds text that is not JSON; the message names table, column and turn."""


def columns(table: str) -> list[str]:
    return [c for c, _ in SCHEMAS[table]]


def _encode(v: Any) -> Any:
    """A JSON column's value as stored: text stays as it is (already encoded), None stays None."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def plain(v: Any) -> Any:
    """A cell as a plain Python value: NaN / NA -> None, numpy scalars -> Python scalars."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v
    return v


def encode_row(table: str, row: dict) -> dict:
    js = JSON_COLUMNS[table]
    return {k: (_encode(v) if k in js else v) for k, v in row.items()}


def frame(table: str, rows: Iterable[dict], prompt_file: str) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the table's columns, in order, ``prompt_file`` filled in and
    JSON columns encoded."""
    cols = columns(table)
    df = pd.DataFrame([{**encode_row(table, r), "prompt_file": prompt_file} for r in rows], columns=cols)
    return df[cols]


def decode_row(table: str, row: dict) -> dict:
    """One stored row as plain Python values, JSON columns decoded, integer columns as ints (pandas
    holds an integer column with nulls as floats); a column the table does not hold is simply
    absent, and an empty or null JSON cell is None."""
    js, ints = JSON_COLUMNS[table], _INT_COLUMNS[table]
    out = {}
    for k, v in row.items():
        v = plain(v)
        if k in ints and isinstance(v, float):
            v = int(v)
        elif k in js and isinstance(v, str):
            try:
                v = json.loads(v) if v else None
            except json.JSONDecodeError as e:
                raise RowDecodeError(f"duel.{table}.{k} of turn {row.get('turn_id')!r} is not JSON: {e}") from None
        out[k] = v
    return out


def records(table: str, df: pd.DataFrame | None) -> list[dict]:
    """A loaded table (or partition) as decoded rows."""
    if df is None or df.empty:
        return []
    return [decode_row(table, r) for r in df.to_dict("records")]


def by_turn(table: str, df: pd.DataFrame | None) -> dict[str, dict]:
    return {r["turn_id"]: r for r in records(table, df)}


def by_instance(table: str, df: pd.DataFrame | None) -> dict[str, dict]:
    return {r["instance_id"]: r for r in records(table, df)}


# ---------------------------------------------------------------- turns


def turn_rows(turns: Iterable[Turn]) -> list[dict]:
    """``sampled_turns`` rows of these turns: every schema column the turn's record has, plus the
    history's size."""
    cols = [c for c in columns("sampled_turns") if c != "prompt_file"]
    out = []
    for t in turns:
        rec = t.to_record()
        row = {c: rec.get(c) for c in cols}
        row["history_messages"] = len(t.history)
        row["history_chars"] = sum(len(m.get("content") or "") for m in t.history)
        out.append(row)
    return out


def turn_from_row(row: dict) -> Turn:
    """A decoded ``sampled_turns`` row back into a :class:`Turn`."""
    rec = {k: v for k, v in row.items() if v is not None}
    rec.setdefault("reference", {})
    return turn_from_record(rec)


def turns_from_frame(df: pd.DataFrame) -> list[Turn]:
    return [turn_from_row(r) for r in records("sampled_turns", df)]
