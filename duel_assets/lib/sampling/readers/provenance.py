"""What a source row says besides its messages: licence, reward, other fields, hidden information.

Every field a reader does not turn into the canonical trajectory travels with the turn in
``source_meta`` (CoderForge ``finish_reason``; SERA ``teacher``, ``rollout``, ``line_level_recall``,
...). Values are kept as JSON; one whose JSON is longer than :data:`META_MAX_CHARS` (a diff, a
config dump) is left out and listed with its size under ``_omitted``, so nothing vanishes unsaid.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from ...turn import BadRecord

META_MAX_CHARS = 2048
HIDDEN_FIELDS = ("repo", "base_commit", "problem_statement", "pr_description", "patch")


def _plain(value: Any) -> Any:
    """JSON-able value (numpy scalars and arrays from parquet become Python ones)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # dates, decimals


def _surely_fits(v: Any) -> bool:
    """Whether ``v``'s JSON is within :data:`META_MAX_CHARS` without writing it: a scalar, or a
    string short enough even if every character became a six-character escape."""
    if v is None or isinstance(v, (bool, float)):
        return True
    if isinstance(v, int):
        return -(10 ** 100) < v < 10 ** 100
    return isinstance(v, str) and 6 * len(v) + 2 <= META_MAX_CHARS


def source_meta(row: dict, consumed: Iterable[str], extra: dict | None = None) -> dict:
    """The row's fields outside ``consumed`` (and outside loader-added ``_`` keys), small ones kept."""
    skip = set(consumed)
    meta: dict = {}
    omitted: dict = {}
    items = list(row.items()) + list((extra or {}).items())
    for k, v in items:
        k = str(k)
        if k in skip or k.startswith("_") or k in meta:
            continue
        v = _plain(v)
        if _surely_fits(v):
            meta[k] = v
            continue
        size = len(json.dumps(v, ensure_ascii=False, default=str))
        if size > META_MAX_CHARS:
            omitted[k] = size
        else:
            meta[k] = v
    if omitted:
        meta["_omitted"] = omitted
    return meta


def reward_of(row: dict) -> float | None:
    """``reward`` (CoderForge), else a boolean ``resolved`` / ``target`` as 1.0 / 0.0."""
    r: Any = row.get("reward")  # a number, a numpy scalar, or anything a source wrote
    if hasattr(r, "item"):
        r = r.item()
    if r is not None:
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise BadRecord("invalid_reward", type(r).__name__)
        return float(r) if math.isfinite(r) else None
    for k in ("resolved", "target"):
        if isinstance(row.get(k), bool):
            return float(row[k])
    return None


def license_of(row: dict) -> str | None:
    v = row.get("license")
    return v.strip() if isinstance(v, str) and v.strip() else None


def hidden_of(row: dict, repo: str | None = None) -> dict | None:
    """Hidden information the row carries itself: raw SERA ``target_patch`` + ``problem_statement``,
    or any row with a ``patch``. None when the row has no patch."""
    patch = row.get("target_patch") if isinstance(row.get("target_patch"), str) and row["target_patch"].strip() else None
    if patch is None and isinstance(row.get("patch"), str) and row["patch"].strip():
        patch = row["patch"]
    if patch is None:
        return None
    out = {k: row[k] for k in HIDDEN_FIELDS if isinstance(row.get(k), str) and row[k]}
    out["patch"] = patch
    if repo and "repo" not in out:
        out["repo"] = repo
    return out


HIDDEN_ROW_KEYS = ("target_patch", "patch", "problem_statement", "pr_description", "base_commit")
PROVENANCE_KEYS = ("license", "reward")
