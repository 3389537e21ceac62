"""Decisions the sensors make, as plain functions over plain data."""
from __future__ import annotations

from pathlib import Path

from .settings.base import partition_key_problem


def scan_prompt_dir(prompt_dir: Path) -> tuple[list[str], list[str]]:
    """(valid keys, refused file names each with why) of the ``*.json`` files in the prompt folder."""
    keys: list[str] = []
    refused: list[str] = []
    if not prompt_dir.exists():
        return keys, refused
    for f in sorted(prompt_dir.glob("*.json")):
        if f.name.startswith("."):
            continue
        stem = f.name[: -len(".json")]
        problem = partition_key_problem(stem)
        if problem:
            refused.append(f"{f.name!r} (partition keys: {problem})")
        else:
            keys.append(stem)
    return keys, refused


def needs_judging(king_id: int | None, challenger_id: int | None, judge_id: int | None,
                  answers_run_in_progress: bool = False) -> bool:
    """Both answer materializations exist and at least one of them is newer than the judging's
    (storage ids): a new challenger alone (a new prompt or model) is judged again, and so is a new
    king alone. While a run that wrote them is still going (it may write the other answer next, or
    judge the partition itself) the pair is not final and nothing is requested."""
    if king_id is None or challenger_id is None or answers_run_in_progress:
        return False
    return judge_id is None or king_id > judge_id or challenger_id > judge_id


def judging_run_key(partition: str, king_id: int, challenger_id: int) -> str:
    return f"judge:{partition}:{king_id}:{challenger_id}"
