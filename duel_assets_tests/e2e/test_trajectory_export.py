"""Whole-trajectory rows (``[export] layout = "trajectory"``) on the bundled samples: ``datasets`` reads
the export, every assistant message's ``train`` flag is its turn's bucket as ``duel_verdict`` has it,
the card's trained-token share is the rows' own, and the replacement rules keep trajectories
consistent."""
from __future__ import annotations

import json
import re

import pytest

from duel_assets.lib.export.trajectory import message_tokens, trajectory_row
from duel_assets.lib.sampling.cutter import cut_turns
from duel_assets.lib.sampling.readers.mini_swe_agent import read_swe_zero
from duel_assets.lib.sampling.sources import bundled_path
from duel_assets_tests.conftest import TEST_CHAIN, materialize, materialize_report, query

TOKEN = re.compile(r"\w+|[^\w\s]")


def _traj(row: dict) -> dict:
    t = read_swe_zero(row)
    return {"messages": t.messages, "tools": t.tools, "protocol": t.protocol, "source": t.source,
            "instance_id": t.instance_id, "traj_id": t.traj_id}


def _turn(step: int, bucket: str, action: str, content: str, score: float = 90.0) -> dict:
    return {"turn_id": f"t.s{step:03d}", "bucket": bucket, "score": score, "prompt_file": "k",
            "challenger": {"content": content, "action": action, "standin": False}}


def test_replacement_rules_keep_the_trajectory_consistent():
    row = json.loads(bundled_path("swe_zero_sample.jsonl").read_text().splitlines()[0])
    traj = _traj(row)
    steps = [i for i, m in enumerate(traj["messages"]) if m["role"] == "assistant"]
    first = cut_turns(read_swe_zero(row))[0][0]
    same_cmd = first.reference["content"].split("```bash\n")[1].split("\n```")[0]
    turns = {0: _turn(0, "final", same_cmd, f"THOUGHT: mine.\n\n```bash\n{same_cmd}\n```"),  # same action: replaced
             1: _turn(1, "refined", "ls /nowhere", "THOUGHT: x\n\n```bash\nls /nowhere\n```"),  # differs: kept, trained
             2: _turn(2, "defeat", "cat x", "THOUGHT: y\n\n```bash\ncat x\n```")}  # defeat: kept, not trained
    last = len(steps) - 1
    turns[last] = _turn(last, "final", "echo hi", "THOUGHT: end.\n\n```bash\necho hi\n```")  # the last move: replaced
    out, rules = trajectory_row(traj, turns, {"final", "refined"}, weight="score")
    msgs = out["messages"]
    assert msgs[steps[0]]["content"].startswith("THOUGHT: mine.") and msgs[steps[0]]["train"]
    assert msgs[steps[1]]["content"] == traj["messages"][steps[1]]["content"] and msgs[steps[1]]["train"]
    assert msgs[steps[2]]["content"] == traj["messages"][steps[2]]["content"] and not msgs[steps[2]]["train"]
    assert msgs[steps[last]]["content"].startswith("THOUGHT: end.") and len(msgs) == steps[last] + 1
    assert rules == {"replaced_last_move": 1, "replaced_same_action": 1, "kept_original_accepted": 1,
                     "not_trained_defeat": 1, "not_dueled": len(steps) - 4}
    assert [m["weight"] for m in msgs if m["train"]] == [0.9, 0.9, 0.9] and msgs[0]["weight"] == 0.0
    assert out["trained_tokens"] == sum(message_tokens(m) for m in msgs if m["train"]) > 0
    truncated, _ = trajectory_row(traj, {1: turns[1]}, {"final", "refined"}, truncate=True)
    assert len(truncated["messages"]) == steps[1] + 1 and truncated["truncated"]
    # truncated after its last trained message, that message is the row's last move: replaced
    assert truncated["messages"][-1]["content"].startswith("THOUGHT: x")


def _tokens(m: dict) -> int:
    """The card's definition, written out again: words and punctuation of content, reasoning, tool calls."""
    parts = [m.get("content") or "", m.get("reasoning_content") or ""]
    parts += [p for c in m.get("tool_calls") or [] for p in (c["function"]["name"], c["function"]["arguments"])]
    return sum(len(TOKEN.findall(p)) for p in parts)


@pytest.mark.e2e
def test_trajectory_rows_on_the_bundled_samples(duel_env, instance):
    duel_env["config"].write_text(TEST_CHAIN + '\n[export]\nlayout = "trajectory"\nweight = "score"\nrequire_gate = false\n')
    for key in ("prompts_18_000", "prompts_18_001", "prompts_18_002"):
        assert materialize(instance, key).success
    assert materialize_report(instance).success
    home = duel_env["home"]
    import datasets

    ds = datasets.load_dataset(str(home / "export"), split="train", download_mode="force_redownload",
                               cache_dir=str(duel_env["tmp"] / "hf_cache"))
    rows = ds.to_list()
    assert rows and all(r["complete"] for r in rows)
    verdict = {t: b for t, b in query(home, "SELECT turn_id, bucket FROM duel.duel_verdict")}
    exported = {t for t, b in verdict.items() if b in ("final", "refined")}
    seen = set()
    for r in rows:
        assert {t for t in r["turns"] if verdict.get(t) in ("final", "refined")}, "a row without an exported turn"
        for m in r["messages"]:
            if m["role"] != "assistant":
                assert not m["train"]
                continue
            if m["turn_id"] is None:
                assert not m["train"]
                continue
            assert m["train"] == (verdict[m["turn_id"]] in ("final", "refined")), m["turn_id"]
            seen.add(m["turn_id"])
            if m["train"]:
                assert m["weight"] > 0
    assert exported <= seen  # every exported turn is a trained message of its trajectory's row
    # one row per source trajectory
    assert len({r["traj_id"] for r in rows}) == len(rows)
    card = (home / "export" / "README.md").read_text()
    share = float(re.search(r"Trained tokens: (\d+) of (\d+) \(share ([0-9.]+)\)", card).group(3))
    total = sum(_tokens(m) for r in rows for m in r["messages"])
    trained = sum(_tokens(m) for r in rows for m in r["messages"] if m["train"])
    assert share == round(trained / total, 6)
    assert "| replaced_last_move:" in card and "## Trajectory rows" in card
    # the per-partition single-turn shards are not there: the folder loads as one table of trajectories
    assert not list((home / "export" / "data").glob("train-*.parquet"))
