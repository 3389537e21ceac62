"""The near-duplicate signatures of the turns a ``DUEL_HOME``'s prompt files hold.

``$DUEL_HOME/near_dup_index.sqlite`` keeps, for every turn sampled with ``[near_duplicates]`` on,
its prompt file, instance, repository, signature and band keys (:class:`.near_dup.Bands`). A band
row is two integers (the band key and the turn's row id, one B-tree without row ids), so recording
a window's turns writes few pages however large the index grows. A window skips a turn that is a
near-duplicate of one another prompt file holds (``near_duplicate_held``) and counts the turns of
each instance and repository other prompt files hold for the caps. It is read and written under
the history index's lock (sampling holds it), and a prompt file sampled again or forgotten gives
its entries back, as with the history index.
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...settings import NearDuplicatesConfig
from ...turn import Turn
from .near_dup import Clusters, Signature, band_params, signature_from_bytes

_CHUNK = 400


class NearDupIndex:
    def __init__(self, home: Path):
        self.path = Path(home) / "near_dup_index.sqlite"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent after a crash; a lost last commit is re-sampled
        con.executescript(
            "CREATE TABLE IF NOT EXISTS turns (id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, "
            "prompt_file TEXT NOT NULL, instance_id TEXT, repo TEXT, num_perm INTEGER, sig BLOB, bands BLOB);"
            "CREATE INDEX IF NOT EXISTS turns_by_file ON turns (prompt_file);"
            "CREATE INDEX IF NOT EXISTS turns_by_instance ON turns (instance_id);"
            "CREATE INDEX IF NOT EXISTS turns_by_repo ON turns (repo);"
            "CREATE TABLE IF NOT EXISTS bands (band INTEGER NOT NULL, turn INTEGER NOT NULL, "
            "PRIMARY KEY (band, turn)) WITHOUT ROWID;")
        return con

    def _query(self, sql: str, values: list, extra: list) -> list[tuple]:
        if not values or not self.path.exists():
            return []
        con = self._connect()
        try:
            out: list[tuple] = []
            for i in range(0, len(values), _CHUNK):
                part = values[i:i + _CHUNK]
                out += con.execute(sql.format(marks=",".join("?" * len(part))), [*part, *extra]).fetchall()
            return out
        finally:
            con.close()

    def candidates(self, key: str, bands: list[int]) -> tuple[dict[int, list[str]], dict[str, tuple[int, bytes]]]:
        """The turns other prompt files hold that have one of these band keys: band -> hashes, and
        hash -> (num_perm, signature)."""
        rows = self._query("SELECT b.band, t.hash, t.num_perm, t.sig FROM bands b JOIN turns t ON t.id = b.turn "
                           "WHERE b.band IN ({marks}) AND t.prompt_file != ?", bands, [key])
        by_band: dict[int, list[str]] = {}
        for band, h, _, _ in rows:
            by_band.setdefault(band, []).append(h)
        return by_band, {h: (n, sig) for _, h, n, sig in rows}

    def counts(self, key: str, column: str, values: list[str]) -> Counter:
        """Turns other prompt files hold per instance_id or repo."""
        assert column in ("instance_id", "repo")
        rows = self._query(f"SELECT {column}, count(*) FROM turns WHERE {column} IN ({{marks}}) AND prompt_file != ? "
                           f"GROUP BY {column}", values, [key])
        return Counter(dict(rows))

    def claim(self, key: str, entries: Iterable[tuple[Turn, Signature]], b: int, r: int) -> None:
        rows = [(t.history_hash, key, t.instance_id, (t.repo or "").lower() or None, len(s.task.hashvalues), s.to_bytes(),
                 np.asarray(s.bands(b, r), dtype=np.int64).tobytes()) for t, s in entries]
        if not rows:
            return
        con = self._connect()
        try:
            with con:
                bands = []
                for row in rows:
                    cur = con.execute("INSERT OR IGNORE INTO turns (hash, prompt_file, instance_id, repo, num_perm, sig, "
                                      "bands) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                    if cur.rowcount == 1:
                        bands += [(int(k), cur.lastrowid) for k in np.frombuffer(row[6], dtype=np.int64)]
                con.executemany("INSERT OR IGNORE INTO bands VALUES (?, ?)", bands)
        finally:
            con.close()

    def release(self, key: str, keep: set[str] | None = None) -> int:
        """Forget the entries of prompt file ``key`` (those not in ``keep``, when given)."""
        if not self.path.exists():
            return 0
        con = self._connect()
        try:
            with con:
                gone = [(i, blob) for i, h, blob in con.execute("SELECT id, hash, bands FROM turns WHERE prompt_file = ?", (key,))
                        if keep is None or h not in keep]
                con.executemany("DELETE FROM bands WHERE band = ? AND turn = ?",
                                [(int(k), i) for i, blob in gone for k in np.frombuffer(blob, dtype=np.int64)])
                con.executemany("DELETE FROM turns WHERE id = ?", [(i,) for i, _ in gone])
                return len(gone)
        finally:
            con.close()


class Screen:
    """A window's admission beyond identical histories: near-duplicates of turns held elsewhere, and
    the caps per instance and per repository (turns other prompt files hold count)."""

    def __init__(self, cfg: NearDuplicatesConfig, key: str, index: NearDupIndex | None, clusters: Clusters | None = None):
        self.cfg, self.key, self.index = cfg, key, index
        self.clusters = clusters or Clusters(cfg)
        self.b, self.r = band_params(cfg.threshold, cfg.num_perm)
        self.instances: Counter = Counter()
        self.repos: Counter = Counter()
        self.inst_held: dict[str, int] = {}  # turns other prompt files hold, per instance / repository
        self.repo_held: dict[str, int] = {}
        self.chosen: list[tuple[Turn, Signature]] = []
        self.known: dict[str, Signature] = {}  # signatures computed already (a whole-source pool's)

    def signature_of(self, t: Turn) -> Signature:
        return self.known.get(t.history_hash) or self.clusters.signature_of(t)

    def prepare(self, turns: list[Turn]) -> set[str]:
        """Before a batch is offered: the hashes of its turns that are near-duplicates of turns other
        prompt files hold, and (for the caps) what those files hold of its instances and repositories."""
        if self.index is None or not turns:
            return set()
        sigs = [self.signature_of(t) for t in turns]
        by_band, found = self.index.candidates(self.key, sorted({k for s in sigs for k in s.bands(self.b, self.r)}))
        others = {h: signature_from_bytes(h, sig, n) for h, (n, sig) in found.items() if n == self.cfg.num_perm}
        if self.cfg.max_per_instance:
            new = sorted({t.instance_id for t in turns} - set(self.inst_held))
            self.inst_held.update({i: 0 for i in new} | dict(self.index.counts(self.key, "instance_id", new)))
        if self.cfg.max_per_repo:
            new = sorted({(t.repo or "").lower() for t in turns if t.repo} - set(self.repo_held))
            self.repo_held.update({r: 0 for r in new} | dict(self.index.counts(self.key, "repo", new)))
        near = set()
        for s in sigs:
            cands = {h for k in s.bands(self.b, self.r) for h in by_band.get(k, ())}
            if any(h in others and others[h].near(s, self.cfg.threshold) for h in cands):
                near.add(s.key)
        return near

    def reason(self, t: Turn, held: set[str]) -> str | None:
        """Why the window does not take ``t`` (after :meth:`prepare` of its batch), or None."""
        repo = (t.repo or "").lower()
        if t.history_hash in held:
            return "near_duplicate_held"
        if self.cfg.max_per_instance and self.inst_held.get(t.instance_id, 0) + self.instances[t.instance_id] >= self.cfg.max_per_instance:
            return "cap_per_instance"
        if self.cfg.max_per_repo and repo and self.repo_held.get(repo, 0) + self.repos[repo] >= self.cfg.max_per_repo:
            return "cap_per_repo"
        return None

    def took(self, t: Turn) -> None:
        self.instances[t.instance_id] += 1
        if t.repo:
            self.repos[t.repo.lower()] += 1
        self.chosen.append((t, self.signature_of(t)))

    def commit(self) -> None:
        """Record the window's turns in the index (after its prompt file is written)."""
        if self.index is not None:
            self.index.claim(self.key, self.chosen, self.b, self.r)
