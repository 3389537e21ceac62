"""Block sampling of large local files, and of remote parquet splits through fsspec."""
import json
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from duel_assets.lib.sampling import blocks, sampler
from duel_assets.lib.sampling.blocks import ReadAhead, block_rows, load_local_block, parquet_blocks
from duel_assets.lib.sampling.sampler import sample_for_key, source_mode
from duel_assets.lib.sampling.sources import bundled_path
from duel_assets.lib.settings import ConfigError, parse_config
from duel_assets_tests.conftest import FIXTURES


def variant_rows(n_variants: int) -> list[dict]:
    base = [json.loads(line) for line in bundled_path("swe_zero_sample.jsonl").read_text().splitlines()]
    out = []
    for v in range(n_variants):
        for r in base:
            msgs = [dict(m) for m in r["messages"]]
            msgs[1]["content"] += f"\n- Variant: {v}"
            out.append({**r, "messages": msgs})
    return out


def config(path, **sampling):
    return parse_config({"sources": [{"format": "swe_zero", "path": str(path)}],
                         "sampling": {"turns_per_file": 20, "block_mode_min_bytes": 1, "seed": 5, **sampling}})


@pytest.fixture
def parquet_source(tmp_path):
    rows = variant_rows(8)  # 128 trajectories
    p = tmp_path / "traj.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p, row_group_size=8)  # 16 row groups
    return p


def test_parquet_block_windows_read_only_their_blocks(parquet_source):
    cfg = config(parquet_source)
    assert source_mode(cfg.sources[0], cfg) == "blocks"
    files = [sample_for_key(f"prompts_60_{i:03d}", cfg) for i in range(3)]
    ids = [[t["turn_id"] for t in f["turns"]] for f in files]
    assert [len(i) for i in ids] == [20, 20, 20]
    assert len(set(sum(ids, []))) == 60  # windows are disjoint
    info = files[0]["sources"][0]
    assert info["mode"] == "blocks" and info["blocks_total"] == 16
    assert info["blocks_read"] <= 4 and info["rows_read"] <= 4 * 8  # ceil(1.5 * 20 / 8) = 4 blocks at most
    # one turn per trajectory by default
    trajs = [t["traj_id"] for f in files for t in f["turns"]]
    assert len(trajs) == len(set(trajs))
    again = sample_for_key("prompts_60_001", cfg)
    assert [t["turn_id"] for t in again["turns"]] == ids[1]


def test_blocks_are_read_ahead_only_when_the_window_needs_them(parquet_source, monkeypatch):
    loads = []

    def recording(block):
        loads.append((block.index, threading.current_thread().name))
        return load_local_block(block)

    asked, ahead = [], []

    class Recording(ReadAhead):
        def rows(self, block, then=None):
            asked.append(block.index)
            if then is not None:
                ahead.append(then.index)
            return super().rows(block, then)

    monkeypatch.setattr(blocks, "load_local_block", recording)
    monkeypatch.setattr(sampler, "ReadAhead", Recording)
    cfg = config(parquet_source)  # 20 turns a window, 8 rows a block: 3 blocks, the first two cannot fill it
    first, other = sample_for_key("prompts_60_000", cfg), sample_for_key("a-key", cfg)
    read = first["sources"][0]["blocks_read"] + other["sources"][0]["blocks_read"]
    assert len(loads) == len(asked) == read and read >= 6  # no block read that the windows did not use
    assert len(ahead) >= 4 and set(ahead) <= set(asked)  # each window read its later blocks ahead
    assert {name for _, name in loads} == {"block-reader_0"}  # read off the sampling thread


def test_read_ahead_returns_each_blocks_own_rows(parquet_source):
    bs = parquet_blocks(parquet_source)
    direct = [block_rows(b, load_local_block(b)) for b in bs[:3]]
    with ReadAhead() as ahead:
        assert ahead.rows(bs[0], then=bs[1]) == direct[0]
        assert ahead.rows(bs[2], then=bs[1]) == direct[2]  # the block read ahead was not the one asked for
        assert ahead.rows(bs[1]) == direct[1]
    assert direct[0] != direct[1]


def test_a_rewritten_parquet_file_is_listed_again(tmp_path):
    p = tmp_path / "traj.parquet"
    pq.write_table(pa.Table.from_pylist(variant_rows(2)), p, row_group_size=8)
    assert [b.rows for b in parquet_blocks(p)] == [8, 8, 8, 8]
    pq.write_table(pa.Table.from_pylist(variant_rows(2)[:12]), p, row_group_size=5)
    assert [b.rows for b in parquet_blocks(p)] == [5, 5, 2]


def test_sampling_without_a_where_predicate_loads_neither_duckdb_nor_pandas(parquet_source):
    code = (
        "import sys\n"
        "from duel_assets.lib.sampling.sampler import sample_for_key\n"
        "from duel_assets.lib.settings import parse_config\n"
        f"cfg = parse_config({{'sources': [{{'format': 'swe_zero', 'path': {str(parquet_source)!r}}}],\n"
        "                     'sampling': {'turns_per_file': 20, 'block_mode_min_bytes': 1}})\n"
        "print(len(sample_for_key('prompts_20_000', cfg)['turns']), 'duckdb' in sys.modules, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.split() == ["20", "False", "False"]


def test_jsonl_block_mode_with_cached_newline_index(tmp_path):
    rows = variant_rows(4)
    p = tmp_path / "traj.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = config(p, jsonl_block_lines=8, turns_per_trajectory=2)
    cache = tmp_path / "idx"
    # through the prompt store, as `duel-assets sample` samples: two windows may meet in one block
    # (a window reads on when its blocks hold too few turns), the history index keeps them disjoint
    from duel_assets.lib.sampling.prompt_store import sample_prompt_file

    home = tmp_path / "home"
    a = sample_prompt_file(home, home / "prompt" / "a.json", "prompts_40_000", cfg, None, cache)
    b = sample_prompt_file(home, home / "prompt" / "b.json", "prompts_40_001", cfg, None, cache)
    assert len(list((cache / "line_index").glob("*.npy"))) == 1
    ta, tb = {t["turn_id"] for t in a["turns"]}, {t["turn_id"] for t in b["turns"]}
    assert len(ta) == len(tb) == 20 and not ta & tb
    per_traj = {}
    for t in a["turns"]:
        per_traj[t["traj_id"]] = per_traj.get(t["traj_id"], 0) + 1
    assert max(per_traj.values()) <= 2
    assert a["sources"][0]["rows_read"] < len(rows)


def test_bad_rows_inside_a_block_are_counted(tmp_path):
    rows = variant_rows(2)
    p = tmp_path / "traj.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines[3] = "{broken"
    lines[5] = json.dumps({**rows[5], "messages": "not json["})
    data = "\n".join(lines).encode().split(b"\n")
    data[7] = data[7][:20] + b"\xff\xfe" + data[7][20:]  # one line that is not UTF-8
    p.write_bytes(b"\n".join(data) + b"\n")
    # more turns asked than the 29 good rows hold, so every row is read whatever the block's shuffle
    # order (the shuffle is seeded by the file's path, here a fresh temporary directory)
    cfg = config(p, jsonl_block_lines=64, turns_per_file=31)
    f = sample_for_key("prompts_31_000", cfg, cache_dir=tmp_path / "idx")
    dup = f["skipped"].pop("duplicate_history", 0)  # rollouts of one task share their first steps
    assert f["skipped"] == {"invalid_json_line": 1, "invalid_messages_json": 1, "non_utf8": 1}
    assert f["sources"][0]["rows_read"] == 32
    assert len(f["turns"]) + dup == 29 and f["sources"][0]["shortfall"] == 31 - len(f["turns"])
    assert len({t["history_hash"] for t in f["turns"]}) == len(f["turns"])


class CountingFS(LocalFileSystem):
    """Local files behind an fsspec protocol of their own, counting every byte read: the hub's
    code path (fsspec listing, footers, range reads of row groups) without the hub."""
    protocol = ("countingfs",)
    bytes_read = 0

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        f = super()._open(path, mode, block_size=block_size, **kwargs)
        read = f.read

        def counted(n=-1):
            data = read(n)
            CountingFS.bytes_read += len(data)
            return data

        f.read = counted
        return f


@pytest.fixture
def remote_split(tmp_path):
    import fsspec

    fsspec.register_implementation("countingfs", CountingFS, clobber=True)
    base = variant_rows(100)
    root = tmp_path / "hubset"
    (root / "data").mkdir(parents=True)
    for i in range(50):  # 50 files x 4 row groups x 8 rows; every row a distinct task variant
        rows = base[i * 32:(i + 1) * 32]
        pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"train-{i:05d}-of-00050.parquet", row_group_size=8)
    pq.write_table(pa.Table.from_pylist(base[:8]), root / "data" / "test-00000-of-00001.parquet")  # another split
    return root


def test_remote_split_windows_spread_over_files_and_rows(remote_split, tmp_path):
    from duel_assets.lib.sampling import hub

    hub.list_parquet.cache_clear()
    cfg = parse_config({"sources": [{"format": "swe_zero", "path": f"countingfs://{remote_split}", "split": "train"}],
                        "sampling": {"turns_per_file": 12, "seed": 2}})
    assert source_mode(cfg.sources[0], cfg) == "hub"
    cache = tmp_path / "cache"
    first = sample_for_key("key-00", cfg, cache_dir=cache)  # lists the split and reads the 50 footers once
    info = first["sources"][0]
    assert info["mode"] == "hub" and info["files_total"] == 50 and info["blocks_total"] == 200
    assert len(list((cache / "parquet_footers").iterdir())) == 50
    blocks, files = [], set()
    for k in range(20):
        before = CountingFS.bytes_read
        f = first if k == 0 else sample_for_key(f"key-{k:02d}", cfg, cache_dir=cache)
        info = f["sources"][0]
        assert len(f["turns"]) == 12 and info["blocks_read"] <= 3
        if k:  # a window reads its row groups and nothing else
            assert 0 < CountingFS.bytes_read - before <= 2 * info["block_bytes"]
        for url, rg in info["blocks"]:
            assert "/data/train-" in url
            n = int(url.rsplit("train-", 1)[1][:5])
            files.add(n)
            blocks.append(n * 32 + rg * 8)  # the block's first row in the split
    assert len(files) >= 15
    # over the whole row range, not near its start (the order of blocks is seeded by the path, here a
    # fresh temporary one, so the bounds leave room for chance: each fails about once in 10^5 runs)
    deciles = {row * 10 // 1600 for row in blocks}
    assert min(blocks) < 400 and max(blocks) >= 1200 and len(deciles) >= 7


def test_remote_split_files_and_token(remote_split, monkeypatch):
    from duel_assets.lib.sampling import hub

    hub.list_parquet.cache_clear()
    urls = [u for u, _, _ in hub.list_parquet(f"countingfs://{remote_split}", "test")]
    assert len(urls) == 1 and urls[0].endswith("test-00000-of-00001.parquet") and urls[0].startswith("countingfs://")
    assert hub.source_url("AlienKevin/SWE-ZERO-12M-trajectories") == "hf://datasets/AlienKevin/SWE-ZERO-12M-trajectories"
    monkeypatch.setenv("HF_TOKEN", "hf_canary")
    assert hub.storage_options("hf://datasets/a/b") == {"token": "hf_canary"}
    assert hub.storage_options("countingfs:///x") == {}
    with pytest.raises(ConfigError, match="no parquet file of split 'validation'"):
        hub.list_parquet(f"countingfs://{remote_split}", "validation")


def test_weights_split_a_file_between_sources(tmp_path, parquet_source):

    fix = FIXTURES / "coderforge_sample.jsonl"
    cfg = parse_config({"sources": [{"format": "swe_zero", "path": str(parquet_source), "weight": 3},
                                    {"format": "coderforge", "path": str(fix), "weight": 1}],
                        "sampling": {"turns_per_file": 20, "block_mode_min_bytes": 10_000_000}})
    f = sample_for_key("prompts_20_000", cfg)
    by_source = {s["format"]: s["turns"] for s in f["sources"]}
    assert by_source == {"swe_zero": 15, "coderforge": 5}
    assert sampler.shares(7, [1, 1, 1]) == [3, 2, 2]
