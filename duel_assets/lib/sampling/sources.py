"""Reading source rows from local files: JSON, JSONL, parquet, mini-swe-agent ``.traj.json`` and
SWE-agent ``.traj`` files (remote sources are read by row group through :mod:`duel_assets.lib.sampling.hub`).

Rows come out as ``(row_index, row)``; a row that cannot even be decoded comes out as a
:class:`BadRow` carrying its reason, so the caller can count it and go on.
"""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..settings import ConfigError, SourceSpec
from ..system.bounded import BadJSON, InputRefused, kind_of, loads, read_bounded

BUNDLED_SOURCES = [SourceSpec(format="swe_zero", path="bundled:swe_zero_sample.jsonl")]
BUNDLED_PR_RECORDS = "bundled:pr_records_sample.jsonl"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".traj")
TRAJ_SUFFIXES = (".traj.json", ".traj")  # one trajectory per file, named after its instance
_URL = re.compile(r"\A[a-zA-Z][a-zA-Z0-9+.-]*://")
# a local JSON / .traj file is read whole (JSON Lines and parquet are read in blocks when large)
MAX_WHOLE_FILE_BYTES = 1 << 30


@dataclass(frozen=True)
class BadRow:
    reason: str
    detail: str = ""


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("duel_assets") / "data" / name))


def resolve_local(path: str) -> list[Path] | None:
    """Local files named by a path, directory or glob; None when the path is not local."""
    if path.startswith("bundled:"):
        return [bundled_path(path.split(":", 1)[1])]
    if _URL.match(path):
        return None  # hf://, file://, s3://, ...: read through fsspec
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.exists() and not p.is_dir():
        raise ConfigError(f"source path {path!r} is {kind_of(p.stat().st_mode)}, not a regular file: refused")
    if p.is_dir():
        return [f for f in sorted(p.rglob("*")) if f.is_file() and f.name.endswith(LOCAL_SUFFIXES)]
    if any(ch in path for ch in "*?["):
        return [Path(f) for f in sorted(glob.glob(os.path.expanduser(path), recursive=True)) if Path(f).is_file()]
    if path.startswith((".", "/", "~")) or path.endswith(LOCAL_SUFFIXES):
        raise ConfigError(f"source path {path!r} does not exist")
    return None  # a hub dataset name such as AlienKevin/SWE-ZERO-12M-trajectories


def local_stamp(path: str) -> tuple[tuple[str, int, int], ...] | None:
    """What changes when a local source's files change: each file's path, size and modification
    time; None when the path names no local file."""
    files = resolve_local(path)
    if not files:
        return None
    return tuple((str(f), (st := f.stat()).st_size, st.st_mtime_ns) for f in files)


def path_identity(path: str) -> str:
    """What names a source or one of its files the same way on every machine: a URL, a hub dataset
    name or a ``bundled:`` name as written; a local path by its last component only (a checkout or a
    home elsewhere must not change which turns a seed picks, nor anything sent to a model)."""
    if path.startswith("bundled:") or _URL.match(path) or (not path.startswith((".", "/", "~")) and not Path(path).exists()):
        return path
    return Path(path.rstrip("/\\")).name or path


def _decode(data: bytes) -> str | BadRow:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        return BadRow("non_utf8", f"byte {e.start}")


def _iter_json_file(path: Path) -> Iterator[object]:
    try:
        raw = read_bounded(path, "source file", MAX_WHOLE_FILE_BYTES)
    except InputRefused as e:
        yield BadRow("file_refused", str(e))
        return
    text = _decode(raw)
    if isinstance(text, BadRow):
        # fall back to line by line so that only the bad lines are lost
        for raw_line in raw.splitlines():
            if raw_line.strip():
                yield parse_json_line(raw_line)
        return
    stripped = text.lstrip()
    if path.name.endswith(".jsonl") or not stripped.startswith(("[", "{")):
        for line in text.splitlines():
            if line.strip():
                yield parse_json_line(line)
        return
    try:
        doc = loads(text)
    except BadJSON:
        for line in text.splitlines():  # JSONL saved as .json
            if line.strip():
                yield parse_json_line(line)
        return
    suffix = next((s for s in TRAJ_SUFFIXES if path.name.endswith(s)), None)
    if suffix:
        name = path.name[: -len(suffix)]
        if isinstance(doc, dict):
            doc.setdefault("_instance_id", name)
        elif isinstance(doc, list):
            doc = {"messages": doc, "_instance_id": name}
        yield doc
    elif isinstance(doc, list):
        yield from doc
    else:
        yield doc


def parse_json_line(line: str | bytes) -> object:
    """One JSON Lines record, or a :class:`BadRow` saying why it is not one."""
    if isinstance(line, bytes):
        text = _decode(line)
        if isinstance(text, BadRow):
            return text
        line = text
    try:
        return loads(line)
    except BadJSON as e:
        return BadRow("invalid_json_line", str(e)[:80])


def _iter_parquet(path: Path, columns: list[str] | None = None) -> Iterator[object]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=256, columns=columns):
        yield from batch.to_pylist()


def iter_rows(spec: SourceSpec) -> Iterator[tuple[int, object]]:
    files = resolve_local(spec.path)
    if files is None:
        raise ConfigError(f"{spec.path!r} is not a local path; remote sources are read by row group by the sampler")
    if not files:
        raise ConfigError(f"source path {spec.path!r} matched no files")
    i = 0
    for f in files:
        it = _iter_parquet(f) if f.suffix == ".parquet" else _iter_json_file(f)
        for row in it:
            yield i, row
            i += 1
