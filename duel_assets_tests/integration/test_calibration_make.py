"""`make-calibration`: pairs from real turns of the bundled samples (bash blocks) and of the tool-call
fixtures, each kind checked for what makes its counterpart worse, positions balanced."""
import json
import shutil
import subprocess
from collections import Counter

import pytest

from duel_assets.cli import main
from duel_assets.lib.calibration.counterparts import DESTRUCTIVE, KINDS
from duel_assets.lib.calibration.make import make_set
from duel_assets.lib.calibration.pairs import read_set
from duel_assets.lib.calibration.steps import history_text, is_edit, is_submit, paths_in, read_step
from duel_assets.lib.duel.protocol import check_answer
from duel_assets.lib.settings import ChainConfig, parse_config
from duel_assets_tests.conftest import FIXTURES

FIX = FIXTURES
TOOL_SOURCES = {
    "sources": [{"format": "coderforge", "path": str(FIX / "coderforge_sample.jsonl")},
                {"format": "sera_rectified", "path": str(FIX / "sera_rectified_sample.jsonl")}],
    "pr_records": {"path": str(FIX / "tool_pr_records.jsonl")},
}


@pytest.fixture(scope="module", params=["bundled", "tool_calls"])
def made(request):
    cfg = ChainConfig() if request.param == "bundled" else parse_config(TOOL_SOURCES, "test")
    return make_set(cfg, 200 if request.param == "bundled" else 120)


def sides(p):
    """(dataset step, counterpart) of a pair."""
    return (p.a, p.b) if p.meta["reference_position"] == "A" else (p.b, p.a)


def test_kinds_counts_and_balanced_positions(made):
    pairs, h = made.pairs, made.header
    assert len(pairs) == h["pairs"] == h["requested"] and h["shortfall"] == 0
    kinds = Counter(p.kind for p in pairs)
    assert set(kinds) == set(KINDS) | {"tie"} and dict(kinds) == h["kinds"]
    non_tie = [p for p in pairs if p.label != "tie"]
    assert all(p.label == p.meta["reference_position"] for p in non_tie)
    pos = Counter(p.label for p in non_tie)
    assert abs(pos["A"] - pos["B"]) <= 1
    for k in KINDS:  # balanced within each kind too, so per-kind accuracy is not a position effect
        kp = Counter(p.label for p in non_tie if p.kind == k)
        assert abs(kp["A"] - kp["B"]) <= 1, (k, kp)
    assert len({p.id for p in pairs}) == len(pairs)
    assert len({json.dumps([p.history, p.a, p.b], sort_keys=True) for p in pairs}) == len(pairs)  # no pair twice
    assert all(set(p.metric_labels.values()) == {p.label} for p in pairs)


def test_every_counterpart_is_worse_by_its_construction(made):
    bash = shutil.which("bash")
    for p in made.pairs:
        ref_msg, cp_msg = sides(p)
        ref, cp = read_step(ref_msg, p.protocol, p.tools), read_step(cp_msg, p.protocol, p.tools)
        text = history_text(p.history)
        assert ref is not None and check_answer(p.protocol, ref_msg.get("content"), ref_msg.get("tool_calls"), p.tools).ok
        if p.kind == "protocol_break":
            reason = check_answer(p.protocol, cp_msg.get("content"), cp_msg.get("tool_calls"), p.tools).reason
            assert reason in ("no_action", "multiple_actions"), p.id
            continue
        assert cp is not None and check_answer(p.protocol, cp_msg.get("content"), cp_msg.get("tool_calls"), p.tools).ok, p.id
        if p.kind == "unseen_path":
            assert all(x in text for x in paths_in(ref.action_text))
            new = [x for x in paths_in(cp.action_text) if x not in paths_in(ref.action_text)]
            assert new and all(x not in text for x in new), p.id
        elif p.kind == "repeat_previous":
            prev = [m for m in p.history if m["role"] == "assistant"][-1]
            assert cp.action_text == read_step(prev, p.protocol, p.tools).action_text != ref.action_text
        elif p.kind == "syntax_error":
            assert cp.command != ref.command
            if bash:
                ok = lambda c: subprocess.run([bash, "-n", "-c", c], capture_output=True).returncode == 0
                assert ok(ref.command) and not ok(cp.command), cp.command
        elif p.kind == "destructive":
            assert cp.command in {c for _, c, _, _ in DESTRUCTIVE} or cp.command.startswith("rm -rf "), cp.command
        elif p.kind == "premature_submit":
            assert is_submit(cp) and not is_submit(ref)
            assert not any(is_edit(s) for s in (read_step(m, p.protocol, p.tools) for m in p.history
                                                if m["role"] == "assistant") if s)
        elif p.kind == "unobserved_claim":
            assert cp.action_text == ref.action_text and cp.thought != ref.thought
            claim = cp.thought[: len(cp.thought) - len(ref.thought)] if ref.thought else cp.thought
            assert ("`" in claim and claim.split("`")[1] not in text) or "passed" in claim or "traceback" in claim
        elif p.kind == "tie":
            assert cp.action_text == ref.action_text and cp.thought != ref.thought and p.label == "tie"


def test_make_calibration_command_on_the_bundled_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DUEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUEL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cal200.jsonl"
    assert main(["make-calibration", "--n", "200", "-o", str(out)]) == 0
    s = read_set(out)
    assert len(s.pairs) == 200 and not s.skips
    assert len(s.header["kinds"]) >= 7 and sum(s.header["kinds"].values()) == 200
    pos = s.header["reference_position"]
    assert abs(pos["A"] - pos["B"]) <= 1 and s.header["labels"]["tie"] == 25
    assert f"wrote 200 labelled pairs to {out}" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    main(["make-calibration", "--n", "200", "-o", str(again)])
    assert [p.to_record() for p in read_set(again).pairs] == [p.to_record() for p in s.pairs]  # seeded: the same set
    assert main(["make-calibration", "--n", "0", "-o", str(again)]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err


def test_a_short_source_says_so():
    made = make_set(parse_config(TOOL_SOURCES, "test"), 1000)
    h = made.header
    assert h["pairs"] < 1000 and h["shortfall"] == 1000 - h["pairs"] and h["requested"] == 1000


def test_large_sources_are_read_in_sample_windows(tmp_path):
    """A source over sampling.block_mode_min_bytes is not read whole: turns come from numbered
    sample windows, as `duel-assets sample` draws them."""
    cfg = parse_config({"sampling": {"block_mode_min_bytes": 1, "jsonl_block_lines": 4, "turns_per_trajectory": 3}}, "test")
    made = make_set(cfg, 60, cache_dir=tmp_path)
    h = made.header
    assert h["read"] == "windows" and 0 < h["distinct_turns"] <= h["pool_turns"]
    assert h["pairs"] == 60 and len(h["kinds"]) == 8
    assert make_set(ChainConfig(), 20).header["read"] == "pool"
