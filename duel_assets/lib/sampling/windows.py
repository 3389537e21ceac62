"""Where a partition key's window of a source lies, and the keys of a numbered sample.

``<stem>_<N>_<i>`` (what ``duel-assets sample --prompts N`` writes) is file ``i`` of a sample of ``N``
turns and takes window ``i``; any other key starts at an offset derived from its hash.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator

NUMBERED_KEY = re.compile(r"\A(?P<stem>.*?)_(?P<total>\d+)_(?P<index>\d+)\Z")


def numbered_keys(total: int, per_file: int, stem: str = "prompts") -> list[str]:
    """The keys of a sample of ``total`` turns in files of ``per_file``."""
    return [f"{stem}_{total}_{i:03d}" for i in range(math.ceil(total / per_file))]


def key_count(key: str, per_file: int) -> int:
    """How many turns the prompt file of ``key`` holds: a numbered key's share of its total, else ``per_file``."""
    m = NUMBERED_KEY.match(key)
    return min(per_file, max(0, int(m["total"]) - int(m["index"]) * per_file)) if m else per_file


def window_start(key: str, width: int, size: int) -> int:
    """Where ``key``'s window begins: numbered keys (``<stem>_<total>_<i>``) at ``i * width``
    (consecutive, disjoint windows); any other key at a fixed offset in [0, size) from its hash."""
    m = NUMBERED_KEY.match(key)
    if m:
        return int(m["index"]) * width
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % max(size, 1)


def scan_order(key: str, width: int, size: int) -> Iterator[int]:
    """Positions a window visits, each at most once: for a numbered key from its start to the end
    (the windows before it are its siblings'), for any other key from its start round to just
    before it."""
    start = window_start(key, width, size)
    if NUMBERED_KEY.match(key):
        yield from range(start, size)
        return
    for j in range(size):
        yield (start + j) % size
