"""Faults, bad input, parallel writers, prompt injection (issue: reliability suite)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duel_assets_tests.conftest import TEST_CHAIN, materialize, metadata, query, standin_post, table_rows

EXE = Path(sys.executable).parent / "duel-assets"
BUNDLED = Path(__file__).resolve().parents[1] / "duel_assets" / "data" / "swe_zero_sample.jsonl"


@pytest.mark.reliability
def test_whole_graph_under_20_percent_faults(duel_env, instance):
    srv = duel_env["standin"]
    srv.state.fault_rate = 0.2  # 429 (Retry-After), 500, timeout, garbage: a fifth of all requests
    standin_post(srv, "/_standin/script", {"faults": ["429", "500", "timeout", "garbage"]})  # each kind at least once
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace("timeout_s = 5", "timeout_s = 1").replace("retry_budget = 4", "retry_budget = 5"))
    home = duel_env["home"]
    for key in ("prompts_12_000", "prompts_12_001"):
        res = materialize(instance, key)
        assert res.success
        for asset in ("king_answers", "challenger_answers"):
            md = metadata(res, asset)
            assert md["llm_completed"] + md["llm_cache_hits"] + md["llm_failures"] == md["llm_requested"] == 6
            rows = query(home, f"SELECT format_ok, error_kind, error FROM duel.{asset} WHERE prompt_file = ?", [key])
            assert len(rows) == 6 and all(ok or (kind and err) for ok, kind, err in rows)
        jm = metadata(res, "judge_scores")
        assert jm["llm_completed"] + jm["llm_cache_hits"] + jm["llm_failures"] == jm["llm_requested"] >= 12
        judged = query(home, "SELECT parsed, parse_error FROM duel.judge_scores WHERE prompt_file = ?", [key])
        assert len(judged) == 12 and all(p or e for p, e in judged)
        vm = metadata(res, "duel_verdict")
        assert sum(r["turns"] for r in table_rows(vm["buckets"])) == 6
    kinds = {e["fault"] for e in srv.state.log if e["fault"]}
    assert kinds == {"429", "500", "timeout", "garbage"}
    faults = sum(1 for e in srv.state.log if e["fault"])
    assert 0.1 <= faults / len(srv.state.log) <= 0.35  # the faults really happened, and were absorbed


def _row(messages, **kw):
    base = json.loads(BUNDLED.read_text().splitlines()[0])
    return json.dumps({**base, **kw, "messages": messages})


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.reliability
def test_four_parallel_writers_on_one_warehouse(fresh_standin, tmp_path):
    home = tmp_path / "shared"
    (home / "dagster_home").mkdir(parents=True)
    cfg = tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_API_KEY"))}
    env.update(DUEL_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), DUEL_CONFIG=str(cfg),
               LLM_BASE_URL=fresh_standin.base_url, LLM_API_KEY="k", DUEL_PROGRESS="0")
    keys = [f"prompts_24_{i:03d}" for i in range(4)]
    # register first (as the sensor would), then four runs in four processes at once
    subprocess.run([str(EXE), "sample", "--prompts", "24", "--per-file", "6"], env=env, check=True, capture_output=True)
    procs = [subprocess.Popen([str(EXE), "run", "--partition", k], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in keys]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
        # the writers take turns on the warehouse: waiting is said (naming a holder), failing never happens
        assert "Could not set lock" not in o + e and "not free after waiting" not in e, e[-2000:]
        for line in (x for x in e.splitlines() if "waiting up to" in x):
            assert "warehouse.duckdb.lock" in line and (any(f"--partition {k}" in line for k in keys)
                                                       or "has not written its PID yet" in line), line
    for t in ("sampled_turns", "king_answers", "judge_scores", "duel_verdict", "exported_buckets"):
        got = query(home, f"SELECT prompt_file, count(*) FROM duel.{t} GROUP BY 1 ORDER BY 1")
        assert [k for k, _ in got] == keys, t
    report = (home / "report" / "report.md").read_text()
    assert all(k in report for k in keys)  # each run ends with duel_report: the last one saw every partition
