"""Clusters of near-duplicates: the connected pairs, among items that share a band, whose two MinHashes
(a turn's recent steps and its task, :mod:`.near_dup`) both agree in at least ``threshold`` of their
values.

The pairs are checked with numpy: a large band's pairs at once (:data:`PAIRS` at a time), the pairs
of all small bands together, none already in one cluster (nothing to learn there), so the clusters
are those of checking every pair, in bounded memory (:data:`CELLS` values compared at once).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

PAIRS = 1 << 20  # index pairs made at once
SMALL = 8  # a band of at most this many items: its pairs are checked with the other small bands'
CELLS = 1 << 22  # MinHash values compared at once


def root(parent: dict[int, int], i: int) -> int:
    """Union-find: the root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def pairs(n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The index pairs ``i < j`` of ``range(n)``, about :data:`PAIRS` at a time."""
    if n * (n - 1) // 2 <= PAIRS:
        yield np.triu_indices(n, 1)
        return
    rows = max(1, PAIRS // n)
    for lo in range(0, n - 1, rows):
        x, y = [], []
        for i in range(lo, min(n - 1, lo + rows)):
            x.append(np.full(n - i - 1, i))
            y.append(np.arange(i + 1, n))
        yield np.concatenate(x), np.concatenate(y)


def similar(values: np.ndarray, x: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Per pair, whether the share of equal values of rows ``x[k]`` and ``y[k]`` reaches ``threshold``."""
    return np.count_nonzero(values[x] == values[y], axis=1) / values.shape[1] >= threshold


class _Linker:
    def __init__(self, steps: np.ndarray, task: np.ndarray, items: list[int], threshold: float):
        self.steps, self.task, self.threshold = steps, task, threshold
        self.parent = {i: i for i in items}

    def join(self, x: np.ndarray, y: np.ndarray) -> None:
        """Join the clusters of each pair ``x[k], y[k]`` near in both MinHashes."""
        step = max(1, CELLS // max(1, self.steps.shape[1]))
        for lo in range(0, len(x), step):
            xs, ys = x[lo:lo + step], y[lo:lo + step]
            near = similar(self.steps, xs, ys, self.threshold) & similar(self.task, xs, ys, self.threshold)
            for i, j in zip(xs[near].tolist(), ys[near].tolist()):
                ri, rj = root(self.parent, i), root(self.parent, j)
                if ri != rj:
                    self.parent[max(ri, rj)] = min(ri, rj)

    def join_band(self, members: list[int]) -> None:
        roots = np.array([root(self.parent, i) for i in members])
        if (roots == roots[0]).all():
            return
        m = np.asarray(members)
        for x, y in pairs(len(m)):
            apart = roots[x] != roots[y]
            self.join(m[x[apart]], m[y[apart]])

    def join_pairs(self, found: Iterable[tuple[int, int]]) -> None:
        rest = [(i, j) for i, j in sorted(found) if root(self.parent, i) != root(self.parent, j)]
        if rest:
            x, y = np.array(rest).T
            self.join(x, y)


def link(band_rows: list[list[bytes]], steps: list[np.ndarray], task: list[np.ndarray], items: list[int],
         threshold: float) -> dict[int, int]:
    """Union-find parents of the clusters of ``items`` (indices into the three lists: each item's
    band contents, and its two MinHashes, all of one length)."""
    groups: dict[bytes, list[int]] = {}
    for i in items:
        for k in band_rows[i]:
            groups.setdefault(k, []).append(i)
    shared = [g for g in groups.values() if len(g) > 1]
    linker = _Linker(np.stack(steps) if shared else np.empty((0, 0)), np.stack(task) if shared else np.empty((0, 0)),
                     items, threshold)
    small: set[tuple[int, int]] = set()
    for members in shared:
        if len(members) > SMALL:
            linker.join_band(members)
            continue
        small.update((members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members)))
        if len(small) >= PAIRS:
            linker.join_pairs(small)
            small = set()
    linker.join_pairs(small)
    return linker.parent
