"""Clusters of near-duplicates: the connected pairs, among items that share a band, whose two MinHashes
(a turn's recent steps and its task, :mod:`.near_dup`) both agree in at least ``threshold`` of their
values.

Items sharing a band are found by a 64-bit key per band (:func:`band_keys`), sorted. The pairs are
checked with numpy: a large band's pairs at once (:data:`PAIRS` at a time), the pairs of all small
bands together, none already in one cluster (nothing to learn there), so the clusters are those of
checking every pair, in bounded memory (:data:`CELLS` values compared at once). The clusters are
kept in a union-find over a numpy array, each under its least item.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

PAIRS = 1 << 20  # index pairs made at once
SMALL = 8  # a band of at most this many items: its pairs are checked with the other small bands'
CELLS = 1 << 22  # MinHash values compared at once
PROPAGATIONS = 8  # label passes before a graph goes to scipy (:func:`components`)
TRIU_KEPT = 128  # the index pairs of a band of at most this many items are kept (at most 128 x 64 KiB)


def root(parent: dict[int, int], i: int) -> int:
    """Union-find: the root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def pairs(n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The index pairs ``i < j`` of ``range(n)``, about :data:`PAIRS` at a time."""
    if n * (n - 1) // 2 <= PAIRS:
        yield _triu(n) if n <= TRIU_KEPT else np.triu_indices(n, 1)
        return
    rows = max(1, PAIRS // n)
    for lo in range(0, n - 1, rows):
        x, y = [], []
        for i in range(lo, min(n - 1, lo + rows)):
            x.append(np.full(n - i - 1, i))
            y.append(np.arange(i + 1, n))
        yield np.concatenate(x), np.concatenate(y)


@lru_cache(maxsize=TRIU_KEPT)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def similar(values: np.ndarray, x: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Per pair, whether the share of equal values of rows ``x[k]`` and ``y[k]`` reaches ``threshold``."""
    return np.count_nonzero(values[x] == values[y], axis=1) / values.shape[1] >= threshold


def components(k: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of nodes ``0..k-1`` joined by edges ``a[e] - b[e]``: per node, the
    least node of its component. Labels are lowered along the edges a few times (enough for the
    cliques near-duplicates make); a graph not settled by then goes to scipy's graph search, linear
    in nodes and edges (a long chain)."""
    lab = np.arange(k)
    if not k or not len(a):
        return lab
    for _ in range(PROPAGATIONS):
        old = lab
        low = np.minimum(lab[a], lab[b])
        lab = lab.copy()
        np.minimum.at(lab, a, low)
        np.minimum.at(lab, b, low)
        lab = lab[lab]  # a label is never above its node: this only lowers it further
        if np.array_equal(lab, old):
            return lab
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, lab = connected_components(coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(k, k)), directed=False)
    least = np.full(int(lab.max()) + 1, k)
    np.minimum.at(least, lab, np.arange(k))
    return least[lab]


class _Linker:
    """Union-find over rows ``0..n-1`` with a numpy parent array: a root is the least row of its
    cluster, and every row's parent is no greater than the row."""

    def __init__(self, steps: np.ndarray, task: np.ndarray, threshold: float):
        self.steps, self.task, self.threshold = steps, task, threshold
        self.parent = np.arange(len(steps))

    def roots(self, rows: np.ndarray) -> np.ndarray:
        r = self.parent[rows]
        while True:
            up = self.parent[r]
            if np.array_equal(up, r):
                return r
            r = up

    def join(self, x: np.ndarray, y: np.ndarray) -> None:
        """Join the clusters of each pair ``x[k], y[k]`` near in both MinHashes."""
        step = max(1, CELLS // max(1, self.steps.shape[1]))
        for lo in range(0, len(x), step):
            xs, ys = x[lo:lo + step], y[lo:lo + step]
            near = similar(self.steps, xs, ys, self.threshold)
            both = np.flatnonzero(near)  # the task's values are compared for those near in their steps only
            near[both] = similar(self.task, xs[both], ys[both], self.threshold)
            if near.any():
                self._union(self.roots(xs[near]), self.roots(ys[near]))

    def _union(self, rx: np.ndarray, ry: np.ndarray) -> None:
        """Join the clusters of roots ``rx[k]`` and ``ry[k]``: each under the least root it reaches."""
        nodes, inv = np.unique(np.concatenate([rx, ry]), return_inverse=True)
        low = nodes[components(len(nodes), inv[:len(rx)], inv[len(rx):])]
        self.parent[nodes] = low
        self.parent = self.parent[self.parent]  # rows under a root that moved: one step from the new root

    def join_band(self, members: np.ndarray) -> None:
        roots = self.roots(members)
        if (roots == roots[0]).all():
            return
        for x, y in pairs(len(members)):
            apart = roots[x] != roots[y]
            self.join(members[x[apart]], members[y[apart]])

    def join_pairs(self, found: Iterable[tuple[int, int]]) -> None:
        if not found:
            return
        x, y = np.array(sorted(found)).T
        apart = self.roots(x) != self.roots(y)
        if apart.any():
            self.join(x[apart], y[apart])


# odd 64-bit constants, fixed: two per MinHash row a band can hold (num_perm is at most 1024), and one for the band's number
_MIX = np.random.default_rng(20240611).integers(0, 1 << 63, size=2049, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def band_keys(task: np.ndarray, steps: np.ndarray, b: int, r: int) -> np.ndarray:
    """``(n, b)`` ``uint64``: a key per band of each of ``n`` items (band ``i``: rows ``i*r`` to
    ``(i+1)*r`` of both MinHashes, and ``i``), equal for equal band contents. The key is a sum of the
    values times fixed odd 64-bit constants (wrapping), so different contents share a key only by a
    rare chance (about 2**-64 a pair); a shared key only makes a candidate pair, which is then checked."""
    n = len(task)
    vals = np.concatenate([task[:, :b * r].reshape(n, b, r), steps[:, :b * r].reshape(n, b, r)], axis=2).astype(np.uint64)
    keys = (vals * _MIX[:2 * r]).sum(axis=2, dtype=np.uint64)
    return keys + np.arange(b, dtype=np.uint64) * _MIX[-1]


def _groups(keys: np.ndarray, items: list[int]) -> list[np.ndarray]:
    """The items of each key that more than one of ``items`` has (``keys``: one row per item of the whole set)."""
    if not items:
        return []
    own = np.asarray(items)
    flat = keys[own].ravel()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    sizes = np.diff(np.r_[starts, len(ranked)])
    owner = np.repeat(own, keys.shape[1])[order]
    return [owner[s:s + n] for s, n in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist())]


def link(keys: np.ndarray, steps: np.ndarray, task: np.ndarray, items: list[int], threshold: float) -> dict[int, int]:
    """Union-find parents of the clusters of ``items`` (indices into the rows of the three arrays:
    each item's band keys (:func:`band_keys`), and its two MinHashes)."""
    shared = _groups(keys, items)
    linker = _Linker(steps, task, threshold)
    small: set[tuple[int, int]] = set()
    for group in shared:
        if len(group) > SMALL:
            linker.join_band(group)
            continue
        members = group.tolist()
        small.update((members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members)))
        if len(small) >= PAIRS:
            linker.join_pairs(small)
            small = set()
    linker.join_pairs(small)
    return dict(zip(items, linker.roots(np.asarray(items, dtype=np.int64)).tolist())) if items else {}
