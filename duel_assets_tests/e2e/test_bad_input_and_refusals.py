"""Bad input counted by reason while the rest goes through the graph, and clear refusals."""
import json
import os
import subprocess

from duel_assets_tests.conftest import EXE, REPO, materialize, metadata, query

BUNDLED = REPO / "duel_assets" / "data" / "swe_zero_sample.jsonl"


def test_bad_input_is_counted_and_nothing_else_is_lost(duel_env, instance, tmp_path):
    good = BUNDLED.read_text().splitlines()
    base = json.loads(good[0])
    msgs = base["messages"]
    huge_obs = [*msgs[:3], {"role": "user", "content": "Observation: " + "x" * 5_000_000}, *msgs[4:]]
    long_hist = msgs[:2] + [m for _ in range(60) for m in msgs[2:4]] + msgs[4:]
    multi = [*msgs[:2], {"role": "assistant", "content": "two\n```bash\nls\n```\n```bash\npwd\n```"}, *msgs[3:]]
    lines = [
        *good[:4],
        good[0],  # the same rollout twice: every history a duplicate
        json.dumps({**base, "messages": "[{\"role\": \"user\", "}),  # invalid JSON messages
        json.dumps({**base, "messages": []}),  # empty messages
        json.dumps({**base, "messages": [m for m in msgs if m["role"] != "assistant"]}),  # no assistant step
        json.dumps({**base, "messages": multi}),  # several bash blocks in one reference
        json.dumps({**base, "instance_id": "huge__obs-1", "messages": huge_obs}),  # a 5 MB observation
        json.dumps({**base, "instance_id": "long__hist-1", "messages": long_hist}),  # past the context budget
        json.dumps({**base, "instance_id": "nopr__missing-1",  # no PR record for it (a task of its own)
                    "messages": [msgs[0], {**msgs[1], "content": msgs[1]["content"] + " (nopr)"}, *msgs[2:]]}),
    ]
    src = tmp_path / "bad.jsonl"
    src.write_bytes(("\n".join(lines[:6]) + "\n").encode() + b'{"instance_id": "x", "bad": "\xff\xfe"}\n'
                    + ("\n".join(lines[6:]) + "\n").encode())
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("turns_per_file = 6", "turns_per_file = 200")
                   .replace("seed = 3", "seed = 3\nmax_history_chars = 6000\nmax_observation_chars = 4000")
                   + f'\n[[sources]]\nformat = "swe_zero"\npath = "{src}"\n')
    res = materialize(instance, "bad_batch")
    assert res.success
    md = metadata(res, "sampled_turns")
    reasons = md["skipped_by_reason"]
    for r in ("source:invalid_messages_json", "source:empty_messages", "source:no_assistant_step", "source:non_utf8",
              "source:reference_multiple_actions", "source:duplicate_history"):
        assert reasons.get(r, 0) >= 1, (r, reasons)
    home = duel_env["home"]
    n_turns = md["turns"]
    assert n_turns > 20
    trimmed = query(home, "SELECT instance_id, max(history_chars) FROM duel.sampled_turns WHERE trimmed GROUP BY 1")
    assert {i for i, _ in trimmed} >= {"huge__obs-1", "long__hist-1"}
    assert all(chars <= 6000 + 500 for _, chars in trimmed)
    assert query(home, "SELECT missing FROM duel.pr_records WHERE instance_id = 'nopr__missing-1'") == [(True,)]
    # everything that was usable went through to the end
    for t in ("king_answers", "challenger_answers", "duel_verdict"):
        assert query(home, f"SELECT count(*) FROM duel.{t}") == [(n_turns,)]
    assert query(home, "SELECT count(*) FROM duel.exported_buckets")[0][0] == query(
        home, "SELECT count(*) FROM duel.duel_verdict WHERE parsed")[0][0]


def test_clear_refusals(duel_env, instance):
    home = duel_env["home"]
    cfg = duel_env["config"]
    # a prompt file that is not JSON
    (home / "prompt").mkdir(parents=True, exist_ok=True)
    (home / "prompt" / "broken.json").write_text("turns: [oops")
    res = materialize(instance, "broken", selection=["sampled_turns"], raise_on_error=False)
    err = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error
    assert "is not JSON" in err.message and "broken.json" in err.message
    # an unknown source format: a config error naming the key
    cfg.write_text(cfg.read_text() + '\n[[sources]]\nformat = "openhands_v9"\npath = "x.jsonl"\n')
    res = materialize(instance, "fresh", selection=["sampled_turns"], raise_on_error=False)
    err = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error
    assert "sources[0].format" in (err.message + "".join(err.cause.message if err.cause else "")) or "sources[0].format" in str(err)
    # a partition key with forbidden characters, at the command line
    env = dict(os.environ)
    out = subprocess.run([str(EXE), "run", "--partition", "bad/key"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "[A-Za-z0-9._-]+" in out.stderr
