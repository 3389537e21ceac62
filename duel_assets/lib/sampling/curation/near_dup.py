"""Near-duplicate turns, kept once per cluster; caps per instance and per repository.

A turn's signature is two MinHashes (datasketch, word 3-shingles of normalised text, :mod:`.shingles`):
one of its **task** (the first user message) and one of its **recent steps and move** (the last
``last_steps`` steps of the history, each an assistant message and the replies after it, then the
target move: content and tool calls). Each message enters with its first
:data:`MESSAGE_CHARS` characters. Two turns are near-duplicates when both estimated Jaccard
similarities reach ``threshold``: the same task alone (every turn of an instance) or a similar
command alone (``ls``) is not enough.

Candidates are found by banding both signatures together (:func:`band_params`): a band is ``r``
rows of the task's MinHash and the same ``r`` rows of the steps' MinHash, ``b`` bands, with ``b`` and
``r`` datasketch's LSH choice for the threshold squared (the least product of the two similarities
of a near-duplicate pair). Two turns are candidates when they agree on a whole band, so turns that
share only their task (every turn of an instance) or only their steps (the same first command in
many instances of a repository) rarely are; candidates are then checked on both similarities.
Within a set of turns known at once (a whole small source, or one block of a large one), clusters
are the connected near-duplicate pairs, and each cluster keeps its member with the smallest
``history_hash``: the choice depends on the turns, not on the order they were read in. A turn that
is a near-duplicate of one kept earlier in the same window (an earlier block), or of a turn another
prompt file of the ``DUEL_HOME`` holds (:mod:`.near_dup_index`), is skipped: there the first one
sampled stays, as for identical histories.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from datasketch import MinHash, MinHashLSH

from ...settings import NearDuplicatesConfig
from ...turn import Turn
from .shingles import minhash, shingle_hashes

MESSAGE_CHARS = 2000
_TASKS: OrderedDict = OrderedDict()  # sha1 of a task -> its MinHash (bounded)
_TASKS_MAX = 50_000


@dataclass
class Signature:
    key: str  # history_hash: the order among near-duplicates
    task: MinHash
    steps: MinHash

    keys: list[int] | None = field(default=None, compare=False)  # band keys (:meth:`bands`), once computed

    def near(self, other: Signature, threshold: float) -> bool:
        """Both estimated Jaccard similarities (the share of equal MinHash values) reach ``threshold``."""
        a, b = self.steps.hashvalues, other.steps.hashvalues
        if len(a) != len(b) or np.count_nonzero(a == b) / len(a) < threshold:
            return False
        a, b = self.task.hashvalues, other.task.hashvalues
        return len(a) == len(b) and bool(np.count_nonzero(a == b) / len(a) >= threshold)

    def bands(self, b: int, r: int) -> list[int]:
        """The keys of its ``b`` bands: band i is rows ``i*r`` to ``(i+1)*r`` of both MinHashes."""
        if self.keys is None:
            task = self.task.hashvalues.astype(np.uint32)
            steps = self.steps.hashvalues.astype(np.uint32)
            self.keys = [int.from_bytes(hashlib.blake2b(bytes([i]) + task[i * r:(i + 1) * r].tobytes()
                                                        + steps[i * r:(i + 1) * r].tobytes(), digest_size=8).digest(),
                                        "big") >> 1 for i in range(b)]
        return self.keys

    def to_bytes(self) -> bytes:
        return np.concatenate([self.task.hashvalues, self.steps.hashvalues]).astype(np.uint32).tobytes()


def signature_from_bytes(key: str, blob: bytes, num_perm: int) -> Signature:
    from .shingles import _permutations

    values = np.frombuffer(blob, dtype=np.uint32)
    perms = _permutations(num_perm)

    def mh(v):
        return MinHash(num_perm=num_perm, hashvalues=v.copy(), permutations=perms, scheme="affine32")

    return Signature(key, mh(values[:num_perm]), mh(values[num_perm:]))


@lru_cache(maxsize=64)
def band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(b, r): datasketch's LSH parameters for ``threshold`` squared at ``num_perm``."""
    lsh = MinHashLSH(threshold=threshold * threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class Bands:
    """Band key -> the items with that band: the candidates of a signature are those sharing a band."""

    def __init__(self, threshold: float, num_perm: int):
        self.b, self.r = band_params(threshold, num_perm)
        self.items: dict[int, list] = {}

    def query(self, s: Signature) -> set:
        return {x for k in s.bands(self.b, self.r) for x in self.items.get(k, ())}

    def insert(self, s: Signature, item) -> None:
        for k in s.bands(self.b, self.r):
            self.items.setdefault(k, []).append(item)


def _text(m: dict) -> str:
    text = (m.get("content") or "")[:MESSAGE_CHARS]
    calls = m.get("tool_calls")
    if calls:
        text += " " + json.dumps([(c.get("function") or {}).get("name") for c in calls]) + " "
        text += " ".join(str((c.get("function") or {}).get("arguments") or "")[:MESSAGE_CHARS] for c in calls)
    return text


def recent_steps(history: list[dict], k: int) -> list[dict]:
    """The last ``k`` steps of a history: from its k-th last assistant message on."""
    if k <= 0:
        return []
    starts = [i for i, m in enumerate(history) if m.get("role") == "assistant"]
    return history[starts[-k]:] if len(starts) >= k else history[starts[0]:] if starts else []


def _task_minhash(task: str, num_perm: int) -> MinHash:
    key = hashlib.sha1(task.encode("utf-8", "surrogatepass")).digest() + num_perm.to_bytes(2, "big")
    got = _TASKS.get(key)
    if got is None:
        got = _TASKS[key] = minhash(shingle_hashes(task[: 4 * MESSAGE_CHARS]), num_perm)
        if len(_TASKS) > _TASKS_MAX:
            _TASKS.popitem(last=False)
    return got


def signature(turn: Turn, cfg: NearDuplicatesConfig) -> Signature:
    task = next((m.get("content") or "" for m in turn.history if m.get("role") == "user"), "")
    steps = " \n ".join(_text(m) for m in [*recent_steps(turn.history, cfg.last_steps), turn.reference])
    return Signature(turn.history_hash, _task_minhash(task, cfg.num_perm), minhash(shingle_hashes(steps), cfg.num_perm))


def _root(parent: dict[int, int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


class Clusters:
    """Near-duplicates among turns seen together, and against the ones kept before (one window or pool)."""

    def __init__(self, cfg: NearDuplicatesConfig):
        self.cfg = cfg
        self.kept = Bands(cfg.threshold, cfg.num_perm)
        self.kept_sigs: dict[str, Signature] = {}
        self.sigs: dict[str, Signature] = {}  # history_hash -> signature of every turn kept (for the index)
        self.skipped: Counter = Counter()

    def _near_kept(self, s: Signature) -> bool:
        return any(self.kept_sigs[k].near(s, self.cfg.threshold) for k in self.kept.query(s))

    def keep(self, turns: list[Turn]) -> list[Turn]:
        """The turns to keep, in their order: one per cluster (the smallest ``history_hash``), none
        near a turn kept before."""
        sigs = [signature(t, self.cfg) for t in turns]
        fresh = [i for i, s in enumerate(sigs) if not self._near_kept(s)]
        self.skipped["near_duplicate"] += len(turns) - len(fresh)
        bands = Bands(self.cfg.threshold, self.cfg.num_perm)
        parent = {i: i for i in fresh}
        for i in fresh:
            for j in bands.query(sigs[i]):
                if sigs[i].near(sigs[j], self.cfg.threshold):
                    a, b = _root(parent, i), _root(parent, j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
            bands.insert(sigs[i], i)
        best: dict[int, int] = {}
        for i in fresh:
            r = _root(parent, i)
            if r not in best or sigs[i].key < sigs[best[r]].key:
                best[r] = i
        chosen = sorted(best.values())
        self.skipped["near_duplicate"] += len(fresh) - len(chosen)
        for i in chosen:
            self.remember(sigs[i])
        return [turns[i] for i in chosen]

    def remember(self, s: Signature) -> None:
        if s.key not in self.kept_sigs:
            self.kept.insert(s, s.key)
            self.kept_sigs[s.key] = s
        self.sigs[s.key] = s

    def signature_of(self, turn: Turn) -> Signature:
        return self.sigs.get(turn.history_hash) or signature(turn, self.cfg)
