"""An inter-process lock beside the DuckDB file. No Dagster imports.

DuckDB lets one process at a time open a database file for writing. Every connection the IO
manager opens holds this lock (``<database>.lock``, flock), so parallel runs on one machine queue
for the file instead of failing on DuckDB's own lock; connections are short (one load or one
partition write), the LLM work happens outside them.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator


def is_local(database: str) -> bool:
    return not str(database).startswith(("md:", "motherduck:"))


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if needed), released on exit or process death."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def warehouse_lock(database: str) -> Iterator[None]:
    if not is_local(database):  # MotherDuck serves concurrent clients itself
        yield
        return
    with file_lock(f"{database}.lock"):
        yield
