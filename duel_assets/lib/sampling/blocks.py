"""Block access to large sources, so a sample reads only what it needs.

A source is cut into blocks: parquet row groups (of local files, or of remote files read through
fsspec range requests: the Hugging Face hub's ``hf://``, or any other fsspec URL), or fixed runs of
lines of a local JSONL file (found with a newline index built once and cached). A window of the
sample reads only its own blocks; rows inside a block are decoded only there.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..system.files import replacing
from .sources import parse_json_line


@dataclass(frozen=True)
class Block:
    path: str  # local path, or the fsspec URL of a remote file
    kind: str  # parquet | jsonl
    index: int  # row group, or block number
    start: int  # jsonl: byte offset of the first line
    end: int  # jsonl: byte offset after the last line
    rows: int
    size: int = 0  # bytes on disk (parquet: the row group's compressed size)
    remote: bool = False


@lru_cache(maxsize=64)
def _parquet_file(path: str, size: int, mtime_ns: int):
    """An open ParquetFile, footer parsed once per file version (a large footer costs ms to parse)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def _open_parquet(path: str | Path):
    st = os.stat(path)
    return _parquet_file(str(path), st.st_size, st.st_mtime_ns)


def row_group_bytes(md, i: int) -> int:
    rg = md.row_group(i)
    return sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))


@lru_cache(maxsize=64)
def _parquet_blocks(path: str, size: int, mtime_ns: int) -> tuple[Block, ...]:
    md = _parquet_file(path, size, mtime_ns).metadata
    return tuple(Block(path, "parquet", i, 0, 0, md.row_group(i).num_rows, row_group_bytes(md, i))
                 for i in range(md.num_row_groups))


def parquet_blocks(path: Path) -> list[Block]:
    """A file's row groups as blocks, listed once per file version (every window of a sample needs them)."""
    st = os.stat(path)
    return list(_parquet_blocks(str(path), st.st_size, st.st_mtime_ns))


def _newline_offsets(path: Path, cache_dir: Path | None) -> np.ndarray:
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir / f"{key}.npy" if cache_dir else None
    if cached and cached.exists():
        return np.load(cached)
    parts = []
    with open(path, "rb") as fh:
        pos = 0
        while True:
            buf = fh.read(1 << 24)
            if not buf:
                break
            nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10) + pos
            parts.append(nl.astype(np.int64))
            pos += len(buf)
    ends = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if not len(ends) or ends[-1] != st.st_size - 1:
        ends = np.append(ends, st.st_size - 1)  # last line without a newline
    if cached:
        with replacing(cached) as tmp, open(tmp, "wb") as fh:  # a concurrent reader never loads half an index
            np.save(fh, ends)
    return ends


def jsonl_blocks(path: Path, lines_per_block: int, cache_dir: Path | None = None) -> list[Block]:
    ends = _newline_offsets(path, cache_dir)
    blocks = []
    for b, first in enumerate(range(0, len(ends), lines_per_block)):
        last = min(first + lines_per_block, len(ends)) - 1
        start = 0 if first == 0 else int(ends[first - 1]) + 1
        end = int(ends[last]) + 1
        blocks.append(Block(str(path), "jsonl", b, start, end, last - first + 1, end - start))
    return blocks


def load_local_block(block: Block) -> object:
    """What a block of a local file holds, read but not yet decoded into rows: a parquet row group
    as an Arrow table, or a JSONL block's bytes (a remote block is read by :mod:`.hub`)."""
    if block.kind == "parquet":
        # one row group, one column chunk each: Arrow's thread pool only adds work and memory here
        return _open_parquet(block.path).read_row_group(block.index, use_threads=False)
    with open(block.path, "rb") as fh:
        fh.seek(block.start)
        return fh.read(block.end - block.start)


def block_rows(block: Block, loaded: object) -> list:
    """The rows of a block :func:`load_local_block` has read."""
    if block.kind == "parquet":
        return loaded.to_pylist()  # type: ignore[attr-defined]
    return [parse_json_line(line) for line in loaded.split(b"\n") if line.strip()]  # type: ignore[attr-defined]


_reader: ThreadPoolExecutor | None = None


def _reset_reader() -> None:
    global _reader
    _reader = None


os.register_at_fork(after_in_child=_reset_reader)  # a forked child starts without the parent's thread


def _read_in_background(block: Block) -> Future:
    """Every local block is read by one long-lived thread: Arrow's allocator keeps a heap per thread,
    so one reading thread holds no more memory than reading in the caller's own thread did."""
    global _reader
    if _reader is None:
        _reader = ThreadPoolExecutor(1, thread_name_prefix="block-reader")
    return _reader.submit(load_local_block, block)


class ReadAhead:
    """Local blocks read one ahead: while the caller cuts a block's rows into turns, the block it
    will certainly read next is being read (Arrow and file reads release the GIL). At most one block
    is held beyond the one being cut."""

    def __init__(self) -> None:
        self._pending: tuple[Block, Future] | None = None

    def rows(self, block: Block, then: Block | None = None) -> list:
        """``block``'s rows; ``then``, the block the caller reads next for sure, is read meanwhile."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] != block:
            pending[1].exception()  # a read of a block no longer wanted ends first
            pending = None
        now = pending[1] if pending is not None else _read_in_background(block)
        if then is not None:
            self._pending = (then, _read_in_background(then))
        return block_rows(block, now.result())

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        if self._pending is not None:
            self._pending[1].exception()
            self._pending = None


def blocks_for(files: list[Path], lines_per_block: int, cache_dir: Path | None) -> list[Block]:
    out: list[Block] = []
    for f in files:
        if f.suffix == ".parquet":
            out.extend(parquet_blocks(f))
        elif f.name.endswith(".jsonl") or f.suffix == ".json":
            out.extend(jsonl_blocks(f, lines_per_block, cache_dir))
    return out


def total_bytes(files: list[Path]) -> int:
    return sum(os.path.getsize(f) for f in files)
