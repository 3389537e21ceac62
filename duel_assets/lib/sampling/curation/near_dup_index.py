"""The near-duplicate signatures of the turns a ``DUEL_HOME``'s prompt files hold.

``$DUEL_HOME/near_dup_index.sqlite`` keeps, for every turn sampled with ``[near_duplicates]`` on,
its prompt file, instance, repository, signature and band keys (:class:`.near_dup.Bands`). A band
row is two integers (the band key and the turn's row id) in B-trees without row ids, in levels
(:data:`LEVELS`): a window's rows go into a small first level, and a level grown past its size
moves into the next one in band order, so that recording a window writes a few pages of a small
tree rather than one page of a large tree per band, however large the index grows (band keys are
random: a large tree's rows have no neighbours among one window's). A window skips a turn that is a
near-duplicate of one another prompt file holds (``near_duplicate_held``) and counts the turns of
each instance and repository other prompt files hold for the caps. It is read and written under
the history index's lock (sampling holds it), and a prompt file sampled again or forgotten gives
its entries back, as with the history index. Recording a prompt file's turns replaces what the
index held for it, each history once. The history index hands a history to one prompt file, so the
hashes here need no index of their own (a unique one takes a random page of a large tree per turn
recorded). Only a crash between the two indexes' releases (``forget``, a prompt file sampled again)
can leave a released prompt file's entries here while another prompt file takes one of its turns:
then both hold it (the caps count it twice) until the first is released. An index file written
with a unique index on the hashes keeps it: there the first holder keeps such a turn alone. A
thread keeps its connections to the last few indexes open (:func:`_connection`), so that a window
does not pay for opening the file and for the checkpoint of its log that closing the last
connection makes.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...settings import NearDuplicatesConfig
from ...turn import Turn
from .near_dup import Clusters, Signature, band_params, signature_from_bytes, with_band_keys

_CHUNK = 400
# band tables, smallest first, each but the last moved into the next when it holds more rows than its limit
LEVELS = (("bands_recent", 1 << 14), ("bands_middle", 1 << 19), ("bands", None))
KEEP_OPEN = 4  # connections a thread keeps open (to the indexes it used last)
_OPEN = threading.local()
_INHERITED: list[sqlite3.Connection] = []  # a forked process's copies of its parent's connections: never used nor closed


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _drop(pid: int, con: sqlite3.Connection) -> None:
    if pid == os.getpid():
        con.close()
    else:
        _INHERITED.append(con)


def _connection(path: Path) -> sqlite3.Connection:
    """This thread's open connection to the index at ``path``: opened again when the file was removed
    or replaced, or in a forked process."""
    cons: OrderedDict = _OPEN.__dict__.setdefault("cons", OrderedDict())
    got = cons.pop(str(path), None)
    if got is not None:
        if got[0] == os.getpid() and got[1] == _identity(path):
            cons[str(path)] = got
            return got[2]
        _drop(got[0], got[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent after a crash; a lost last commit is re-sampled
        con.execute("PRAGMA cache_size=-65536")  # 64 MiB: the hash index's pages stay read between windows
        con.execute("PRAGMA mmap_size=1073741824")  # the file's first GiB read in place, not copied page by page
        con.execute("PRAGMA wal_autocheckpoint=8192")  # a page written by many windows is copied back once
        con.executescript(
            "CREATE TABLE IF NOT EXISTS turns (id INTEGER PRIMARY KEY, hash TEXT NOT NULL, "
            "prompt_file TEXT NOT NULL, instance_id TEXT, repo TEXT, num_perm INTEGER, sig BLOB, bands BLOB);"
            "CREATE INDEX IF NOT EXISTS turns_by_file ON turns (prompt_file);"
            "CREATE INDEX IF NOT EXISTS turns_by_instance ON turns (instance_id);"
            "CREATE INDEX IF NOT EXISTS turns_by_repo ON turns (repo);"
            + "".join(f"CREATE TABLE IF NOT EXISTS {t} (band INTEGER NOT NULL, turn INTEGER NOT NULL, "
                      "PRIMARY KEY (band, turn)) WITHOUT ROWID;" for t, _ in LEVELS))
    except BaseException:
        con.close()
        raise
    cons[str(path)] = (os.getpid(), _identity(path), con)
    while len(cons) > KEEP_OPEN:
        _drop(*cons.popitem(last=False)[1][::2])
    return con


class NearDupIndex:
    def __init__(self, home: Path):
        self.path = Path(home) / "near_dup_index.sqlite"

    def _connect(self) -> sqlite3.Connection:
        return _connection(self.path)

    def _query(self, sqls: list[str], values: list, extra: list) -> list[tuple]:
        """The rows of each query (``{marks}``: the values, a chunk at a time), on one connection."""
        if not values or not self.path.exists():
            return []
        con = self._connect()
        out: list[tuple] = []
        for sql in sqls:
            for i in range(0, len(values), _CHUNK):
                part = values[i:i + _CHUNK]
                out += con.execute(sql.format(marks=",".join("?" * len(part))), [*part, *extra]).fetchall()
        return out

    def candidates(self, key: str, bands: list[int]) -> tuple[dict[int, list[str]], dict[str, tuple[int, bytes]]]:
        """The turns other prompt files hold that have one of these band keys: band -> hashes, and
        hash -> (num_perm, signature)."""
        if not bands or not self.path.exists():
            return {}, {}
        # one statement over every level, the keys given as one JSON array (no statement per chunk of keys) and
        # looked up one after the other in each level (CROSS JOIN: no temporary index of the keys per level)
        sql = " UNION ALL ".join(f"SELECT b.band, t.hash, t.num_perm, t.sig FROM json_each(?1) k CROSS JOIN {t} b "
                                 "ON b.band = k.value JOIN turns t ON t.id = b.turn WHERE t.prompt_file != ?2" for t, _ in LEVELS)
        rows = self._connect().execute(sql, (json.dumps(sorted(set(bands))), key)).fetchall()
        by_band: dict[int, list[str]] = {}
        for band, h, _, _ in rows:
            by_band.setdefault(band, []).append(h)
        return by_band, {h: (n, sig) for _, h, n, sig in rows}

    def counts(self, key: str, column: str, values: list[str]) -> Counter:
        """Turns other prompt files hold per instance_id or repo."""
        assert column in ("instance_id", "repo")
        rows = self._query([f"SELECT {column}, count(*) FROM turns WHERE {column} IN ({{marks}}) AND prompt_file != ? "
                            f"GROUP BY {column}"], values, [key])
        return Counter(dict(rows))

    def claim(self, key: str, entries: Iterable[tuple[Turn, Signature]], b: int, r: int) -> None:
        """Record prompt file ``key``'s turns (in place of any it held), each history once (the first)."""
        first: dict[str, tuple[Turn, Signature]] = {}
        for t, s in entries:
            first.setdefault(t.history_hash, (t, s))
        with_band_keys([s for _, s in first.values()], b, r)
        rows = [(t.history_hash, key, t.instance_id, (t.repo or "").lower() or None, len(s.task_values), s.to_bytes(),
                 np.asarray(s.bands(b, r), dtype=np.int64).tobytes()) for t, s in first.values()]
        if not rows and not self.path.exists():
            return
        con = self._connect()
        with con:
            con.execute("BEGIN IMMEDIATE")
            _forget(con, key)
            # row ids grow: the rows inserted are those past the last one (an index file with a unique index on
            # the hashes ignores a hash another prompt file holds)
            last = con.execute("SELECT coalesce(max(id), 0) FROM turns").fetchone()[0]
            con.executemany("INSERT OR IGNORE INTO turns (hash, prompt_file, instance_id, repo, num_perm, sig, bands) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            new = con.execute("SELECT id, bands FROM turns WHERE id > ?", (last,)).fetchall()
            keys = [np.frombuffer(blob, dtype=np.int64) for _, blob in new]
            if keys:
                band = np.concatenate(keys)
                turn = np.repeat(np.array([i for i, _ in new], dtype=np.int64), [len(k) for k in keys])
                order = np.lexsort((turn, band))  # in (band, turn) order: the pages of the tree in turn
                con.executemany(f"INSERT OR IGNORE INTO {LEVELS[0][0]} VALUES (?, ?)",
                                np.stack([band[order], turn[order]], axis=1).tolist())
            _settle(con)

    def release(self, key: str, keep: set[str] | None = None) -> int:
        """Forget the entries of prompt file ``key`` (those not in ``keep``, when given)."""
        if not self.path.exists():
            return 0
        con = self._connect()
        with con:
            return _forget(con, key, keep)


def _forget(con: sqlite3.Connection, key: str, keep: set[str] | None = None) -> int:
    gone = [(i, blob) for i, h, blob in con.execute("SELECT id, hash, bands FROM turns WHERE prompt_file = ?", (key,))
            if keep is None or h not in keep]
    if gone:
        pairs = [(int(k), i) for i, blob in gone for k in np.frombuffer(blob, dtype=np.int64)]
        for t, _ in LEVELS:
            con.executemany(f"DELETE FROM {t} WHERE band = ? AND turn = ?", pairs)
        con.executemany("DELETE FROM turns WHERE id = ?", [(i,) for i, _ in gone])
    return len(gone)


def _settle(con: sqlite3.Connection) -> None:
    """Move each band level that holds more rows than its limit into the next one (in band order: a
    level's rows land together in the next one's pages)."""
    for (table, limit), (upper, _) in zip(LEVELS, LEVELS[1:]):
        if limit is None or con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] <= limit:
            return
        con.execute(f"INSERT OR IGNORE INTO {upper} SELECT band, turn FROM {table} ORDER BY band, turn")
        con.execute(f"DELETE FROM {table}")


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
        with_band_keys(sigs, self.b, self.r)
        by_band, found = self.index.candidates(self.key, [k for s in sigs for k in s.bands(self.b, self.r)])
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
