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
from typing import TYPE_CHECKING

import numpy as np

from ...settings import NearDuplicatesConfig
from ...turn import Turn
from .linking import band_keys, link, root
from .shingles import _permutations, joined_minhash_values, minhash_values, shingle_array

MESSAGE_CHARS = 2000
_TASKS: OrderedDict = OrderedDict()  # sha1 of a task and num_perm -> its MinHash values (bounded)
_TASKS_MAX = 50_000

if TYPE_CHECKING:  # datasketch (and scipy under it) loads only when curation runs
    from datasketch import MinHash


@dataclass
class Signature:
    """A turn's two MinHashes, kept as their hash values (``uint32``, datasketch's ``affine32``
    scheme); :attr:`task` and :attr:`steps` are them as datasketch ``MinHash`` objects."""

    key: str  # history_hash: the order among near-duplicates
    task_values: np.ndarray
    steps_values: np.ndarray

    keys: list[int] | None = field(default=None, compare=False)  # band keys (:meth:`bands`), once computed

    @property
    def task(self) -> MinHash:
        return _as_minhash(self.task_values)

    @property
    def steps(self) -> MinHash:
        return _as_minhash(self.steps_values)

    def near(self, other: Signature, threshold: float) -> bool:
        """Both estimated Jaccard similarities (the share of equal MinHash values) reach ``threshold``."""
        a, b = self.steps_values, other.steps_values
        if len(a) != len(b) or np.count_nonzero(a == b) / len(a) < threshold:
            return False
        a, b = self.task_values, other.task_values
        return len(a) == len(b) and bool(np.count_nonzero(a == b) / len(a) >= threshold)

    def bands(self, b: int, r: int) -> list[int]:
        """The keys of its ``b`` bands (:func:`with_band_keys`): the same in every process, as the index keeps them."""
        if self.keys is None:
            with_band_keys([self], b, r)
        assert self.keys is not None
        return self.keys

    def to_bytes(self) -> bytes:
        return np.concatenate([self.task_values, self.steps_values]).astype(np.uint32).tobytes()


def _band_numbers(b: int) -> np.ndarray:
    """Band i's number as it starts band i's row: ``(b, 1)`` bytes, or ``(b, 2)`` (big-endian) past 256 bands."""
    return np.arange(b, dtype=">u2" if b > 256 else np.uint8).view(np.uint8).reshape(b, -1)


def with_band_keys(sigs: list[Signature], b: int, r: int) -> None:
    """Set the band keys (:meth:`Signature.bands`) of the signatures that lack them, all at once. Band
    i's row is its number (a byte; two, big-endian, past 256 bands) and rows ``i*r`` to ``(i+1)*r`` of
    both MinHashes (``uint32``); its key is the row's 63-bit BLAKE2b digest. The rows are laid out by
    numpy in one buffer and each digested in place."""
    todo = [s for s in sigs if s.keys is None]
    if not todo:
        return
    numbers = _band_numbers(b)
    n, w, h = len(todo), 4 * r, numbers.shape[1]
    rows = np.empty((n, b, h + 2 * w), dtype=np.uint8)
    rows[:, :, :h] = numbers
    for at, values in ((h, [s.task_values for s in todo]), (h + w, [s.steps_values for s in todo])):
        part = np.ascontiguousarray(np.stack(values).astype(np.uint32)[:, :b * r])
        rows[:, :, at:at + w] = part.view(np.uint8).reshape(n, b, w)
    flat, size = rows.reshape(-1).data, h + 2 * w
    keys = [int.from_bytes(hashlib.blake2b(flat[i:i + size], digest_size=8).digest(), "big") >> 1
            for i in range(0, n * b * size, size)]
    for i, s in enumerate(todo):
        s.keys = keys[i * b:(i + 1) * b]


def _as_minhash(values: np.ndarray) -> MinHash:
    from datasketch import MinHash

    return MinHash(num_perm=len(values), hashvalues=values.copy(), permutations=_permutations(len(values)), scheme="affine32")


def signature_from_bytes(key: str, blob: bytes, num_perm: int) -> Signature:
    values = np.frombuffer(blob, dtype=np.uint32)
    return Signature(key, values[:num_perm], values[num_perm:])


@lru_cache(maxsize=64)
def band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(b, r): datasketch's LSH parameters for ``threshold`` squared at ``num_perm``."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold * threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class Bands:
    """Band -> the items with that band: the candidates of a signature are those sharing a band (its
    key, :meth:`Signature.bands`)."""

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


def _steps_parts(turn: Turn, k: int) -> list[str]:
    """The texts of its last ``k`` steps and its move (the steps text joins them with ``" \\n "``)."""
    return [_text(m) for m in [*recent_steps(turn.history, k), turn.reference]]


def _task_of(turn: Turn) -> str:
    return next((m.get("content") or "" for m in turn.history if m.get("role") == "user"), "")


def _task_values(tasks: list[str], num_perm: int) -> list[np.ndarray]:
    """The MinHash values of each task (kept per process: every turn of an instance has its task)."""
    keys = [hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() + num_perm.to_bytes(2, "big") for t in tasks]
    new = list(dict.fromkeys(k for k in keys if k not in _TASKS))
    if new:
        text = {k: t for k, t in zip(keys, tasks)}
        for k, v in zip(new, minhash_values([shingle_array(text[k][: 4 * MESSAGE_CHARS]) for k in new], num_perm)):
            _TASKS[k] = v
    out = [_TASKS[k] for k in keys]
    while len(_TASKS) > _TASKS_MAX:
        _TASKS.popitem(last=False)
    return out


def signatures(turns: list[Turn], cfg: NearDuplicatesConfig) -> list[Signature]:
    """Each turn's signature, the MinHashes of all of them computed together."""
    if not turns:
        return []
    tasks = _task_values([_task_of(t) for t in turns], cfg.num_perm)
    steps = joined_minhash_values([_steps_parts(t, cfg.last_steps) for t in turns], cfg.num_perm)
    return [Signature(t.history_hash, task, step) for t, task, step in zip(turns, tasks, steps)]


def signature(turn: Turn, cfg: NearDuplicatesConfig) -> Signature:
    return signatures([turn], cfg)[0]


class Clusters:
    """Near-duplicates among turns seen together, and against the ones kept before (one window or pool)."""

    def __init__(self, cfg: NearDuplicatesConfig):
        self.cfg = cfg
        self.kept = Bands(cfg.threshold, cfg.num_perm)
        self.kept_sigs: dict[str, Signature] = {}
        self.unbanded: list[Signature] = []  # kept, not yet in ``kept`` (banded when a later batch asks)
        self.sigs: dict[str, Signature] = {}  # history_hash -> signature of every turn kept (for the index)
        self.skipped: Counter = Counter()

    def _near_kept(self, s: Signature) -> bool:
        if not self.kept_sigs:
            return False
        if self.unbanded:
            with_band_keys(self.unbanded, self.kept.b, self.kept.r)
            for u in self.unbanded:
                self.kept.insert(u, u.key)
            self.unbanded = []
        return any(self.kept_sigs[k].near(s, self.cfg.threshold) for k in self.kept.query(s))

    def keep(self, turns: list[Turn]) -> list[Turn]:
        """The turns to keep, in their order: one per cluster (the smallest ``history_hash``), none
        near a turn kept before."""
        sigs = signatures(turns, self.cfg)
        if self.kept_sigs:
            with_band_keys(sigs, self.kept.b, self.kept.r)
        fresh = [i for i, s in enumerate(sigs) if not self._near_kept(s)]
        self.skipped["near_duplicate"] += len(turns) - len(fresh)
        parent = self._linked(sigs, fresh)
        best: dict[int, int] = {}
        for i in fresh:
            r = root(parent, i)
            if r not in best or sigs[i].key < sigs[best[r]].key:
                best[r] = i
        chosen = sorted(best.values())
        self.skipped["near_duplicate"] += len(fresh) - len(chosen)
        for i in chosen:
            self.remember(sigs[i])
        return [turns[i] for i in chosen]

    def _linked(self, sigs: list[Signature], fresh: list[int]) -> dict[int, int]:
        if len(fresh) < 2:
            return {i: i for i in fresh}
        b, r = band_params(self.cfg.threshold, self.cfg.num_perm)
        task, steps = np.stack([s.task_values for s in sigs]), np.stack([s.steps_values for s in sigs])
        return link(band_keys(task, steps, b, r), steps, task, fresh, self.cfg.threshold)

    def remember(self, s: Signature) -> None:
        if s.key not in self.kept_sigs:
            self.unbanded.append(s)
            self.kept_sigs[s.key] = s
        self.sigs[s.key] = s

    def signature_of(self, turn: Turn) -> Signature:
        return self.sigs.get(turn.history_hash) or signature(turn, self.cfg)
