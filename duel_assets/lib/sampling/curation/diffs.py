"""Unified diffs as the files they touch and the line ranges of their hunks.

Two patches overlap when they change a file in common and a hunk of one and a hunk of the other
cover intersecting line ranges of that file's old side (``@@ -start,count ...``: lines
``start .. start + count - 1``; a hunk that only inserts, count 0, covers the line it inserts
after). Old sides are compared because both patches are written against a version of the
repository before their change; a file created by a patch (``--- /dev/null``) has no old side and
overlaps the other patch's hunks in that file whatever their lines.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_DIFF = re.compile(r"^diff --git a/(.+?) b/(.+?)$")
_OLD = re.compile(r"^--- (?:a/)?(.+?)\s*$")
_NEW = re.compile(r"^\+\+\+ (?:b/)?(.+?)\s*$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
NEW_FILE = (0, -1)  # the old-side range of a created file: overlaps any range in that file


@dataclass(frozen=True)
class Patch:
    files: frozenset[str]
    hunks: dict[str, tuple[tuple[int, int], ...]]  # file -> old-side (first, last) line ranges

    def __bool__(self) -> bool:
        return bool(self.files)


def _range(start: int, count: int) -> tuple[int, int]:
    if count == 0:
        return (start, start)
    return (start, start + count - 1)


def parse_patch(text: str | None) -> Patch:
    """The files a unified diff changes (by their new path; a deletion by its old one) and the old-side
    line range of each hunk. Text that is not a diff gives an empty patch."""
    hunks: dict[str, list[tuple[int, int]]] = {}
    current: str | None = None
    old_path: str | None = None
    created = False
    for line in (text or "").splitlines():
        if line.startswith("diff --git "):
            m = _DIFF.match(line)
            current = m.group(2) if m else None
            old_path, created = None, False
            if current:
                hunks.setdefault(current, [])
        elif line.startswith("--- "):
            m = _OLD.match(line)
            old_path = m.group(1) if m else None
            created = old_path == "/dev/null"
        elif line.startswith("+++ "):
            m = _NEW.match(line)
            new_path = m.group(1) if m else None
            current = old_path if new_path == "/dev/null" else new_path
            if current:
                hunks.setdefault(current, [])
        elif line.startswith("@@") and current:
            m = _HUNK.match(line)
            if m:
                count = 1 if m.group(2) is None else int(m.group(2))
                hunks[current].append(NEW_FILE if created else _range(int(m.group(1)), count))
    return Patch(frozenset(hunks), {f: tuple(r) for f, r in hunks.items()})


def _intersect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    if a == NEW_FILE or b == NEW_FILE:
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def overlap(a: Patch, b: Patch) -> list[str]:
    """The files both patches change in intersecting hunks (sorted); empty when they do not overlap."""
    out = []
    for f in sorted(a.files & b.files):
        if any(_intersect(x, y) for x in a.hunks.get(f, ()) for y in b.hunks.get(f, ())):
            out.append(f)
    return out
