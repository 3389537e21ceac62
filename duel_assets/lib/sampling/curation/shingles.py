r"""Text as MinHash signatures: normalised, cut into word shingles, hashed.

The MinHash itself is datasketch's (``affine32`` scheme). Shingle hashes are computed here, with
stable hashes (CRC-32 of each word, combined per shingle), so a signature is the same in every
process and on every machine; Python's own ``hash`` is salted per process and never used.

Normalising makes runs of one instance that differ only by their temporary files, hashes, times
and counters look alike: the text is lower-cased and cut into words (``\w+``; punctuation is
left out), temporary paths become ``<tmp>``, a hex word of 4+ characters with a digit (hashes,
commit ids, UUID parts) ``<hex>``, and every other digit run ``<num>`` (dates and times come apart
at ``-`` and ``:`` into such runs).
"""
from __future__ import annotations

import re
import zlib
from functools import lru_cache

import numpy as np
from datasketch import MinHash

_TMP = re.compile(r"(?:/private)?/(?:tmp|var/tmp|var/folders|dev/shm)(?:/[^\s'\"`:;,)\]}]*)?|[A-Za-z]:\\[^\s]*\\Temp\\[^\s'\"]*")
_TMP_HINTS = ("/tmp", "/var/", "/dev/shm", "\\Temp\\")
_WORD = re.compile(r"\w+")
_HEXWORD = re.compile(r"\A[0-9a-f]{4,}\Z")
_DIGITS = re.compile(r"\d+")
_WORDS: dict[str, int] = {}  # word -> hash of its normalised form (bounded: cleared when large)
_MUL = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1, 0xD3A2646C, 0xFD7046C5)


def _normal_word(word: str) -> str:
    """``<hex>`` for a hex run of 4+ characters with a digit (ids, hashes, UUID parts), else each digit
    run as ``<num>`` (times and dates come apart at ``:`` and ``-`` into numbers)."""
    if not any(c.isdigit() for c in word):
        return word
    if _HEXWORD.match(word):
        return "<hex>"
    return _DIGITS.sub("<num>", word)


def words(text: str) -> list[str]:
    """The text's words, normalised: lower case, temporary paths as ``<tmp>``, ids, hashes, times and
    numbers as placeholders."""
    text = text.lower()
    if any(h in text for h in _TMP_HINTS):
        text = _TMP.sub(" zztmpzz ", text)
    return [_normal_word(w) if w != "zztmpzz" else "<tmp>" for w in _WORD.findall(text)]


def normalise(text: str) -> str:
    return " ".join(words(text))


def _word_hash(w: str) -> int:
    norm = "<tmp>" if w == "zztmpzz" else _normal_word(w)
    h = _WORDS[w] = zlib.crc32(norm.encode("utf-8", "surrogatepass"))
    return h


def _word_hashes(text: str) -> list[int]:
    text = text.lower()
    if any(h in text for h in _TMP_HINTS):
        text = _TMP.sub(" zztmpzz ", text)
    if len(_WORDS) > 1 << 20:
        _WORDS.clear()
    found = _WORD.findall(text)
    got = list(map(_WORDS.get, found))
    if None not in got:
        return got  # type: ignore[return-value]  # every word known
    return [h if h is not None else _WORDS.get(w) or _word_hash(w) for w, h in zip(found, got)]


def shingle_hashes(text: str, n: int = 3) -> list[int]:
    """The distinct 32-bit hashes of the normalised text's ``n``-word shingles, sorted (a shorter
    text: one shingle of all its words; an empty text: none). A shingle's hash is the sum of its
    words' hashes, each times a constant of its position, modulo 2**32 (:func:`_combine`)."""
    h = _word_hashes(text)
    if len(h) < n:
        return [_combine(h)] if h else []
    w = np.asarray(h, dtype=np.uint64)
    m = len(h) - n + 1
    acc = np.zeros(m, dtype=np.uint64)
    for i in range(n):  # uint64 arithmetic wraps: the low 32 bits are exact
        acc += w[i:i + m] * np.uint64(_MUL[i % len(_MUL)])
    return np.unique(acc & np.uint64(0xFFFFFFFF)).tolist()


def _combine(hs: list[int]) -> int:
    acc = 0
    for i, x in enumerate(hs):
        acc = (acc + x * _MUL[i % len(_MUL)]) & 0xFFFFFFFF
    return acc


@lru_cache(maxsize=16)
def _permutations(num_perm: int) -> np.ndarray:
    return MinHash(num_perm=num_perm, seed=1).permutations


def _same(x: int) -> int:
    return x


def minhash(hashes: list[int], num_perm: int) -> MinHash:
    """datasketch's MinHash of a set of 32-bit hashes (fixed permutations: seed 1, ``affine32``)."""
    m = MinHash(num_perm=num_perm, permutations=_permutations(num_perm), scheme="affine32", hashfunc=_same)
    if hashes:
        m.update_batch(hashes)
    return m


def text_minhash(text: str, num_perm: int, n: int = 3) -> MinHash:
    return minhash(shingle_hashes(text, n), num_perm)
