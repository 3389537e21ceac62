"""Reading prompt files: bounded, validated, each history once. No Dagster imports.

A prompt file is a JSON list of turns or an object with a ``turns`` list. It must be a regular file
(a symlink to ``/dev/zero`` or a FIFO is refused before anything is read) no larger than
``sampling.max_prompt_file_bytes``; every turn is validated and its history bounded by the same
rules as source rows. Turns that fail are counted by reason; a file with no valid turn, or listing
more turns than a partition holds, is an error.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .system.bounded import BadJSON, InputRefused, loads, read_bounded
from .trajectories import BadRecord, Turn, turn_from_record

PROMPT_FILE_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class PromptFileError(ValueError):
    pass


@dataclass
class LoadedPromptFile:
    turns: list[Turn]
    skipped: Counter
    meta: dict


def read_prompt_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, after checking that it is a regular file within ``max_bytes``."""
    try:
        return read_bounded(path, "prompt file", max_bytes, "sampling.max_prompt_file_bytes")
    except InputRefused as e:
        raise PromptFileError(str(e)) from None


def load_prompt_file(path: Path, max_turns: int = 200, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_history_chars: int = 0, max_obs_chars: int = 0) -> LoadedPromptFile:
    data = read_prompt_bytes(path, max_bytes)
    try:
        doc = loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise PromptFileError(f"prompt file {path} is not UTF-8 (byte {e.start})") from None
    except BadJSON as e:
        raise PromptFileError(f"prompt file {path} is not JSON: {e}") from None
    if isinstance(doc, list):
        doc = {"turns": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("turns"), list):
        raise PromptFileError(f"prompt file {path} must be a JSON list of turns or an object with a 'turns' list")
    if len(doc["turns"]) > max_turns:  # refused whole: keeping the first max_turns would drop the rest unseen
        raise PromptFileError(f"prompt file {path} lists {len(doc['turns'])} turns; a prompt file (one partition) "
                              f"holds at most {max_turns}: split it into files of at most {max_turns} turns")
    skipped: Counter = Counter()
    turns: list[Turn] = []
    seen_ids: set[str] = set()
    seen_hashes: set[str] = set()
    for rec in doc["turns"]:
        try:
            t = turn_from_record(rec, max_history_chars, max_obs_chars)
        except BadRecord as e:
            skipped[e.reason] += 1
            continue
        if t.turn_id in seen_ids:
            skipped["duplicate_turn_id"] += 1
            continue
        if t.history_hash in seen_hashes:
            skipped["duplicate_history"] += 1
            continue
        seen_ids.add(t.turn_id)
        seen_hashes.add(t.history_hash)
        turns.append(t)
    if not turns:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "it lists no turns"
        raise PromptFileError(f"prompt file {path} has no valid turn ({why})")
    meta = {k: v for k, v in doc.items() if k != "turns"}
    return LoadedPromptFile(turns=turns, skipped=skipped, meta=meta)
