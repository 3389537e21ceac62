"""Prompt files in a DUEL_HOME: sampled, written and loaded under the history index, so no
history appears twice."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..settings import ChainConfig
from ..system.files import write_json_atomic
from .curation.near_dup_index import NearDupIndex
from .curation.records import recheck
from .curation.trajectory_store import TrajectoryStore
from .curation.window import Curation
from .history_index import HistoryIndex
from .prompt_files import LoadedPromptFile, PromptFileError, load_prompt_file
from .row_filter import compile_where
from .sampler import sample_for_key

RESAMPLE_TAG = "duel/resample"


class DeletedPromptFile(PromptFileError):
    """A prompt file this DUEL_HOME held before is gone; it is not sampled again unasked."""


def sample_prompt_file(home: Path, path: Path, key: str, cfg: ChainConfig, pools: dict | None = None,
                       cache_dir: Path | None = None, resample: bool = False) -> dict:
    """Sample ``key`` into ``path`` and record its histories, all under the index lock (two
    processes sampling at once never hand out one turn twice). ``resample`` first gives back the
    histories ``key`` held. Raises :class:`sampling.NothingToSample` when nothing unused is left."""
    compile_where(cfg.filters.where)
    index = HistoryIndex(home, cfg.locks.timeout_s)
    with index.locked():
        if resample:
            index.release(key)
            NearDupIndex(home).release(key)
        cur = Curation(cfg, key, home)
        payload = sample_for_key(key, cfg, pools, cache_dir, taken=index.taken_by_others(key), cur=cur)
        write_json_atomic(path, payload)
        index.claim(key, [(t["history_hash"], t["turn_id"]) for t in payload["turns"]])
        cur.commit()  # near-duplicate signatures of its turns
        TrajectoryStore(home).put(cur.trajectories)
    return payload


def ensure_prompt_file(home: Path, path: Path, key: str, cfg: ChainConfig, cache_dir: Path | None = None,
                       resample: bool = False, held_before: bool = False) -> str:
    """The partition's prompt file, sampled now when it was never written; a prompt file that
    existed once (the index knows it, or ``held_before``: the caller knows it was loaded) and was
    deleted is an error unless ``resample``. Returns where the turns come from."""
    if path.exists() or path.is_symlink():
        return "prompt file"
    if (held_before or HistoryIndex(home).known(key)) and not resample:
        raise DeletedPromptFile(
            f"prompt file {path} of partition {key} was deleted; it is not sampled again unless asked "
            f"(run tag {RESAMPLE_TAG}=true, `duel-assets run --resample`), or restore the file")
    sample_prompt_file(home, path, key, cfg, cache_dir=cache_dir, resample=resample)
    return "re-sampled" if resample else "sampled now"


def load_partition(home: Path, path: Path, key: str, cfg: ChainConfig) -> LoadedPromptFile:
    """The prompt file's valid turns, bounded like source rows; turns whose history another
    prompt file of this DUEL_HOME holds are skipped as ``duplicate_history``."""
    s = cfg.sampling
    loaded = load_prompt_file(path, max_turns=200, max_bytes=s.max_prompt_file_bytes,
                              max_history_chars=s.max_history_chars, max_obs_chars=s.max_observation_chars)
    index = HistoryIndex(home, cfg.locks.timeout_s)
    with index.locked():
        dup = set(index.claim(key, [(t.history_hash, t.turn_id) for t in loaded.turns], exact=True))
        NearDupIndex(home).release(key, keep={t.history_hash for t in loaded.turns})
    if dup:
        loaded.skipped = loaded.skipped + Counter(duplicate_history=len(dup))
        loaded.turns = [t for i, t in enumerate(loaded.turns) if i not in dup]
    loaded.meta["decontamination_at_load"] = recheck(loaded.turns, cfg)  # sets excluded_reason / contamination
    if not loaded.turns:
        raise PromptFileError(f"prompt file {path} has no valid turn (duplicate_history: {len(dup)}: every history "
                              "is already held by another prompt file)")
    return loaded


