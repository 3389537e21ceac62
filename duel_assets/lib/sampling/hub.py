"""Remote parquet sources through fsspec: the Hugging Face hub (``hf://``, or a bare dataset
name) and any other fsspec URL.

A remote source is the parquet files of one split: listed once per process, each file's footer
read once (a range request at the end of the file, eight files at a time) and cached under the
sample's cache folder, every row group a block. A window then reads only its own row groups, by range requests for their column chunks.

Which files make the split: for a dataset name, the repository's parquet files whose path has a
folder named like the split or whose file name starts with it (``data/train-00000-of-00004.parquet``,
``default/train/0000.parquet``, ``trajectories/SWE_Rebench-00001-of-00018.parquet``); when no file
is named for any split and the split is ``train``, all of them; when the repository has no parquet
file of the split, the hub's own parquet conversion (revision ``refs/convert/parquet``). A URL
naming a folder is read the same way; a URL naming a file or a glob is read as given.
"""
from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from ..settings import ConfigError, SourceSpec, env
from .blocks import Block, row_group_bytes

_URL = re.compile(r"\A[a-zA-Z][a-zA-Z0-9+.-]*://")
CONVERTED = "refs%2Fconvert%2Fparquet"
FOOTER_THREADS = 8


def is_url(path: str) -> bool:
    return bool(_URL.match(path))


def source_url(path: str) -> str:
    """A dataset name becomes its hf:// URL; URLs stay as given."""
    return path if is_url(path) else f"hf://datasets/{path.strip('/')}"


def storage_options(url: str) -> dict:
    """The hub's token comes from ``HF_TOKEN`` (never logged); other filesystems use their own."""
    return {"token": env.hf_token()} if url.startswith("hf://") else {}


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url, **storage_options(url))


def _in_split(path: str, split: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    s = split.lower()
    return any(p.lower() == s for p in parts[:-1]) or re.match(rf"\A{re.escape(s)}[-_.]", name.lower()) is not None


def _named_for_a_split(path: str) -> bool:
    return any(_in_split(path, s) for s in ("train", "validation", "valid", "dev", "test", "eval"))


def _parquet_under(fs, root: str) -> dict[str, dict]:
    if any(ch in root for ch in "*?["):
        found = fs.glob(root, detail=True)
    elif fs.isfile(root):
        return {root: fs.info(root)}
    else:
        found = fs.glob(root.rstrip("/") + "/**/*.parquet", detail=True)
    return {p: info for p, info in found.items() if info.get("type", "file") == "file"}


def _split_files(found: dict[str, dict], split: str, explicit_files: bool) -> dict[str, dict]:
    if explicit_files or not found:
        return found
    chosen = {p: i for p, i in found.items() if _in_split(p, split)}
    if not chosen and split == "train" and not any(_named_for_a_split(p) for p in found):
        return found
    return chosen


@lru_cache(maxsize=32)
def list_parquet(path: str, split: str) -> tuple[tuple[str, int, str], ...]:
    """(url, size, version) of every parquet file of the split, sorted by url."""
    url = source_url(path)
    fs, root = _fs(url)
    explicit = any(ch in root for ch in "*?[") or root.endswith(".parquet")
    try:
        found = _split_files(_parquet_under(fs, root), split, explicit)
        if not found and not is_url(path) and "@" not in path:
            conv_fs, conv_root = _fs(f"hf://datasets/{path.strip('/')}@{CONVERTED}")
            found = _split_files(_parquet_under(conv_fs, conv_root), split, False)
            fs = conv_fs
    except (FileNotFoundError, OSError) as e:
        raise ConfigError(f"source {path!r}: cannot list it ({type(e).__name__}: {str(e)[:200]})") from None
    bad = [p for p in found if not p.endswith(".parquet")]
    if bad:
        raise ConfigError(f"source {path!r}: remote sources are read as parquet; {bad[0]!r} is not a parquet file")
    if not found:
        raise ConfigError(f"source {path!r}: no parquet file of split {split!r} found")
    out = []
    for p, info in sorted(found.items()):
        lfs = info["lfs"] if isinstance(info.get("lfs"), dict) else {}
        version = str(lfs.get("sha256") or info.get("blob_id") or info.get("etag") or info.get("mtime") or info.get("last_modified") or "")
        out.append((fs.unstrip_protocol(p), int(info.get("size") or 0), version))
    return tuple(out)


@lru_cache(maxsize=4096)
def _footer(url: str, size: int, version: str, cache_dir: str | None):
    """A file's parquet footer: one range request the first time, then from the disk cache."""
    import pyarrow.parquet as pq

    cached = None
    if cache_dir:
        key = hashlib.sha1(f"{url}|{size}|{version}".encode()).hexdigest()[:20]
        cached = Path(cache_dir) / f"{key}.parquet-footer"
        if cached.exists():
            try:
                return pq.read_metadata(cached)
            except OSError:
                pass
    fs, p = _fs(url)
    with fs.open(p, "rb", cache_type="none") as fh:
        md = pq.read_metadata(fh)
    if cached:
        from ..system.files import replacing

        with replacing(cached) as tmp:
            md.write_metadata_file(str(tmp))
    return md


def remote_blocks(spec: SourceSpec, cache_dir: Path | None) -> list[Block]:
    blocks: list[Block] = []
    footers = str(cache_dir / "parquet_footers") if cache_dir else None
    if footers:
        Path(footers).mkdir(parents=True, exist_ok=True)
    files = list_parquet(spec.path, spec.split)
    with ThreadPoolExecutor(max_workers=FOOTER_THREADS) as pool:  # footers are small: latency-bound requests
        mds = list(pool.map(lambda f: _footer(f[0], f[1], f[2], footers), files))
    for (url, _, _), md in zip(files, mds):
        _METADATA[url] = md
        blocks.extend(Block(url, "parquet", i, 0, 0, md.row_group(i).num_rows, row_group_bytes(md, i), remote=True)
                      for i in range(md.num_row_groups))
    return blocks


_METADATA: dict = {}


def read_remote_row_group(url: str, index: int) -> list:
    """One row group, read by range requests for its column chunks (the footer is known already)."""
    import pyarrow.parquet as pq

    fs, p = _fs(url)
    with fs.open(p, "rb", cache_type="none") as fh:
        pf = pq.ParquetFile(fh, metadata=_METADATA.get(url))
        return pf.read_row_group(index).to_pylist()
