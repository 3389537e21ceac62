import json

import pytest

from duel_assets.lib.sampling.prompt_files import PromptFileError, load_prompt_file
from duel_assets.lib.sampling.sampler import NothingToSample, build_pool, sample_for_key
from duel_assets.lib.sampling.windows import numbered_keys, window_start
from duel_assets.lib.settings import ChainConfig, ConfigError, parse_config, validate_partition_key


def cfg(per_file=10, seed=1):
    c = ChainConfig()
    c.sampling.turns_per_file = per_file
    c.sampling.seed = seed
    return c


def test_numbered_windows_are_disjoint_and_deterministic():
    c = cfg()
    pools = {}
    keys = numbered_keys(25, 10)
    assert keys == ["prompts_25_000", "prompts_25_001", "prompts_25_002"]
    files = [sample_for_key(k, c, pools) for k in keys]
    ids = [[t["turn_id"] for t in f["turns"]] for f in files]
    assert [len(i) for i in ids] == [10, 10, 5]
    assert len(set(sum(ids, []))) == 25
    again = sample_for_key(keys[1], c)
    assert [t["turn_id"] for t in again["turns"]] == ids[1]


def test_windows_never_wrap_around():
    c = cfg(per_file=30)
    held = len(build_pool(c).turns)
    assert 30 < held < 60
    pools, files = {}, []
    for k in numbered_keys(200, 30):
        try:
            files.append(sample_for_key(k, c, pools))
        except NothingToSample:
            files.append(None)
    hashes = [t["history_hash"] for f in files if f for t in f["turns"]]
    assert len(hashes) == len(set(hashes)) == held  # all there is, once
    assert files[1]["delivered"] == held - 30 and files[1]["shortfall"] == 60 - held
    assert all(f is None for f in files[2:])
    assert window_start("prompts_200_002", 30, held) == 60 >= held


def test_other_keys_are_seeded_by_the_key():
    c = cfg()
    a1 = [t["turn_id"] for t in sample_for_key("alpha", c)["turns"]]
    a2 = [t["turn_id"] for t in sample_for_key("alpha", c)["turns"]]
    b = [t["turn_id"] for t in sample_for_key("bravo", c)["turns"]]
    assert a1 == a2 and a1 != b and len(a1) == 10


@pytest.mark.parametrize("key", ["", "a/b", "a...b", "bad key", "ünï", "a,b"])
def test_forbidden_partition_keys_are_refused_with_the_pattern(key):
    with pytest.raises(ConfigError, match=r"\[A-Za-z0-9\._-\]\+"):
        validate_partition_key(key)


def test_prompt_file_problems(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{nope")
    with pytest.raises(PromptFileError, match="not JSON"):
        load_prompt_file(bad)
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(PromptFileError, match="not UTF-8"):
        load_prompt_file(bad)
    c = cfg(per_file=4)
    doc = sample_for_key("k", c)
    doc["turns"].append(dict(doc["turns"][0]))  # duplicate turn id
    doc["turns"].append({"turn_id": "t", "instance_id": "i", "history": "{broken", "reference": "x"})
    doc["turns"].append(42)
    good = tmp_path / "k.json"
    good.write_text(json.dumps(doc))
    loaded = load_prompt_file(good)
    assert len(loaded.turns) == 4
    assert loaded.skipped == {"duplicate_turn_id": 1, "invalid_history_json": 1, "turn_not_an_object": 1}


def test_unknown_source_format_names_the_key():
    with pytest.raises(ConfigError, match=r'sources\[0\]\.format: got "openhands_v9"; allowed: one of "swe_zero"'):
        parse_config({"sources": [{"format": "openhands_v9", "path": "x.jsonl"}]})
    with pytest.raises(ConfigError, match=r'gate\.min_margn: unknown key \(did you mean "min_margin"\?\)'):
        parse_config({"gate": {"min_margn": 3}})
