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
from typing import TYPE_CHECKING

import numpy as np

# temporary paths in lower-cased text: POSIX ones (a pattern that starts with "/", which the regex
# engine finds fast; "/tmpl" or "/tmp.txt" is none, "/tmp." ending a sentence is one) and Windows
# ones (looked for only in a text that holds "\\temp\\")
_TMP = re.compile(r"/(?:private/)?(?:tmp|var/tmp|var/folders|dev/shm)(?![\w-]|\.\w)(?:/[^\s'\"`:;,)\]}]*)?")
_TMP_HINTS = ("/tmp", "/var/", "/dev/shm")
_TMP_WINDOWS = re.compile(r"[a-z]:\\[^\s]*\\temp\\[^\s'\"]*")
_WORD = re.compile(r"\w+")
_HEXWORD = re.compile(r"\A[0-9a-f]{4,}\Z")
_DIGITS = re.compile(r"\d+")
_WORDS: dict[str, int] = {}  # word -> hash of its normalised form (bounded: cleared when large)
_MUL = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1, 0xD3A2646C, 0xFD7046C5)

if TYPE_CHECKING:  # datasketch (and scipy under it) loads only when curation runs
    from datasketch import MinHash


def _normal_word(word: str) -> str:
    """``<hex>`` for a hex run of 4+ characters with a digit (ids, hashes, UUID parts), else each digit
    run as ``<num>`` (times and dates come apart at ``:`` and ``-`` into numbers)."""
    if not any(c.isdigit() for c in word):
        return word
    if _HEXWORD.match(word):
        return "<hex>"
    return _DIGITS.sub("<num>", word)


def _untemp(text: str) -> str:
    """Lower-cased ``text`` with each temporary path as the word ``zztmpzz``."""
    if any(h in text for h in _TMP_HINTS):
        text = _TMP.sub(" zztmpzz ", text)
    if "\\temp\\" in text:
        text = _TMP_WINDOWS.sub(" zztmpzz ", text)
    return text


def words(text: str) -> list[str]:
    """The text's words, normalised: lower case, temporary paths as ``<tmp>``, ids, hashes, times and
    numbers as placeholders."""
    text = _untemp(text.lower())
    return [_normal_word(w) if w != "zztmpzz" else "<tmp>" for w in _WORD.findall(text)]


def normalise(text: str) -> str:
    return " ".join(words(text))


def _word_hash(w: str) -> int:
    norm = "<tmp>" if w == "zztmpzz" else _normal_word(w)
    h = _WORDS[w] = zlib.crc32(norm.encode("utf-8", "surrogatepass"))
    return h


def _word_hashes(text: str) -> list[int]:
    text = _untemp(text.lower())
    if len(_WORDS) > 1 << 20:
        _WORDS.clear()
    found = _WORD.findall(text)
    got = list(map(_WORDS.get, found))
    if None not in got:
        return got  # type: ignore[return-value]  # every word known
    return [h if h is not None else _WORDS.get(w) or _word_hash(w) for w, h in zip(found, got)]


def shingle_array(text: str, n: int = 3) -> np.ndarray:
    """The distinct 32-bit hashes of the normalised text's ``n``-word shingles, sorted, as ``uint32``
    (a shorter text: one shingle of all its words; an empty text: none). A shingle's hash is the sum
    of its words' hashes, each times a constant of its position, modulo 2**32 (:func:`_combine`)."""
    h = _word_hashes(text)
    if len(h) < n:
        return np.asarray([_combine(h)] if h else [], dtype=np.uint32)
    w = np.asarray(h, dtype=np.uint64)
    m = len(h) - n + 1
    acc = np.zeros(m, dtype=np.uint64)
    for i in range(n):  # uint64 arithmetic wraps: the low 32 bits are exact
        acc += w[i:i + m] * np.uint64(_MUL[i % len(_MUL)])
    return np.unique((acc & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def shingle_hashes(text: str, n: int = 3) -> list[int]:
    """:func:`shingle_array` as a list of ints."""
    return shingle_array(text, n).tolist()


def _combine(hs: list[int]) -> int:
    acc = 0
    for i, x in enumerate(hs):
        acc = (acc + x * _MUL[i % len(_MUL)]) & 0xFFFFFFFF
    return acc


@lru_cache(maxsize=16)
def _permutations(num_perm: int) -> np.ndarray:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=1).permutations


def _same(x: int) -> int:
    return x


def minhash(hashes: list[int] | np.ndarray, num_perm: int) -> MinHash:
    """datasketch's MinHash of a set of 32-bit hashes (fixed permutations: seed 1, ``affine32``), its
    values computed by :func:`minhash_values` (the same as its ``update_batch``, without a Python call per hash)."""
    from datasketch import MinHash

    values = minhash_values([np.asarray(hashes, dtype=np.uint32)], num_perm)[0]
    return MinHash(num_perm=num_perm, hashvalues=values, permutations=_permutations(num_perm), scheme="affine32",
                   hashfunc=_same)


def text_minhash(text: str, num_perm: int, n: int = 3) -> MinHash:
    return minhash(shingle_array(text, n), num_perm)


_FMIX32 = (16, np.uint32(0x85EBCA6B), 13, np.uint32(0xC2B2AE35), 16)  # MurmurHash3's finaliser, as datasketch pre-mixes
_BATCH_CELLS = 1 << 22  # shingles x permutations computed at once


def minhash_values(sets: list[np.ndarray], num_perm: int) -> np.ndarray:
    """The hash values :func:`minhash` gives each set of 32-bit hashes, all sets at once: one
    ``(len(sets), num_perm)`` ``uint32`` array, row ``i`` equal to ``minhash(sets[i]).hashvalues``.

    The same arithmetic as datasketch's ``affine32`` ``update_batch`` (each hash pre-mixed with the
    MurmurHash3 finaliser, then ``a * h + b`` modulo 2**32 per permutation, the least per set; an
    empty set keeps the initial maximum), done with numpy over the shingles of many sets together.
    A hash given twice in a set changes nothing (the least value is the same)."""
    lens = np.fromiter((len(x) for x in sets), dtype=np.int64, count=len(sets))
    flat = np.concatenate([np.asarray(x, dtype=np.uint32) for x in sets]) if sets else np.zeros(0, np.uint32)
    return _minhash_flat(flat, lens, num_perm)


def _minhash_flat(flat: np.ndarray, lens: np.ndarray, num_perm: int) -> np.ndarray:
    """:func:`minhash_values` of the sets ``flat`` holds one after the other, ``lens[i]`` hashes each."""
    a, b = _permutations(num_perm)
    out = np.full((len(lens), num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    ends = np.cumsum(lens)
    rows = np.flatnonzero(lens)
    step = max(1, _BATCH_CELLS // num_perm)
    i = 0
    while i < len(rows):  # groups of sets with at most ``step`` hashes in all (or one larger set)
        first = ends[rows[i]] - lens[rows[i]]
        j = max(i + 1, int(np.searchsorted(ends[rows], first + step, side="right")))
        group = rows[i:j]
        hv = flat[first:ends[group[-1]]]
        s1, m1, s2, m2, s3 = _FMIX32
        hv = hv ^ (hv >> s1)
        hv = hv * m1
        hv = hv ^ (hv >> s2)
        hv = hv * m2
        hv = hv ^ (hv >> s3)
        # one row per permutation (uint32: wraps modulo 2**32), each set's hashes side by side in it:
        # numpy's loops run along the long rows, several times faster than along rows of num_perm
        phv = a[:, None] * hv[None, :]
        phv += b[:, None]
        out[group] = np.minimum.reduceat(phv, ends[group] - lens[group] - first, axis=1).T
        i = j
    return out


def joined_minhash_values(docs: list[list[str]], num_perm: int, n: int = 3) -> np.ndarray:
    """``minhash_values([shingle_array(" \\n ".join(parts), n) for parts in docs], num_perm)``, with the
    words of each part hashed once per process while it is seen again (a message shared by turns of
    a trajectory, or by runs of an instance): a part's words are the joined text's words there, as
    neither a word nor a temporary path reaches over the whitespace between parts."""
    parts = [_part_words(p) for doc in docs for p in doc]  # every document's parts, one after the other
    upto = np.concatenate([[0], np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))])
    bounds = upto[np.cumsum([0, *map(len, docs)])]
    first, counts = bounds[:-1], np.diff(bounds)  # each document's first word and its words
    whole = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    long = counts >= n
    lens = np.where(long, counts - n + 1, np.minimum(counts, 1))  # shingles per document
    ends = np.cumsum(lens)
    flat = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint32)
    if long.any():
        w = whole.astype(np.uint64)
        m = len(w) - n + 1
        acc = np.zeros(m, dtype=np.uint64)
        for i in range(n):  # every window of the joined words; those across two documents are left out
            acc += w[i:i + m] * np.uint64(_MUL[i % len(_MUL)])
        size, start = lens[long], first[long]
        pos = np.repeat(start - (np.cumsum(size) - size), size) + np.arange(int(size.sum()))
        flat[np.repeat(long, lens)] = (acc[pos] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    for d in np.flatnonzero(~long & (counts > 0)):  # fewer words than a shingle: one shingle of them all
        flat[ends[d] - 1] = _combine(whole[first[d]:first[d] + counts[d]].tolist())
    return _minhash_flat(flat, lens, num_perm)


_PARTS: dict[str, np.ndarray] = {}  # text -> its words' hashes (bounded: cleared when large)


def _part_words(text: str) -> np.ndarray:
    got = _PARTS.get(text)
    if got is None:
        if len(_PARTS) >= 4096:
            _PARTS.clear()
        got = _PARTS[text] = np.asarray(_word_hashes(text), dtype=np.uint32)
    return got
