"""Block access to large sources, so a sample reads only what it needs. No Dagster imports.

A source is cut into blocks: parquet row groups, or fixed runs of lines of a JSONL file (found with
a newline index built once and cached beside the warehouse). A window of the sample reads only
its own blocks; rows inside a block are decoded only there.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from .files import replacing
from .sources import parse_json_line


@dataclass(frozen=True)
class Block:
    path: str
    kind: str  # parquet | jsonl
    index: int  # row group, or block number
    start: int  # jsonl: byte offset of the first line
    end: int  # jsonl: byte offset after the last line
    rows: int


@lru_cache(maxsize=64)
def _parquet_file(path: str, size: int, mtime_ns: int):
    """An open ParquetFile, footer parsed once per file version (a large footer costs ms to parse)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def _open_parquet(path: str | Path):
    st = os.stat(path)
    return _parquet_file(str(path), st.st_size, st.st_mtime_ns)


def parquet_blocks(path: Path) -> list[Block]:
    md = _open_parquet(path).metadata
    return [Block(str(path), "parquet", i, 0, 0, md.row_group(i).num_rows) for i in range(md.num_row_groups)]


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
        blocks.append(Block(str(path), "jsonl", b, start, int(ends[last]) + 1, last - first + 1))
    return blocks


def read_block(block: Block) -> Iterator[object]:
    if block.kind == "parquet":
        yield from _open_parquet(block.path).read_row_group(block.index).to_pylist()
        return
    with open(block.path, "rb") as fh:
        fh.seek(block.start)
        data = fh.read(block.end - block.start)
    for line in data.split(b"\n"):
        if line.strip():
            yield parse_json_line(line)


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
