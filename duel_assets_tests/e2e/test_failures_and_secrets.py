"""The failure threshold, judging with no answers, and a canary key never written anywhere."""
import os
from pathlib import Path

import duckdb

from duel_assets_tests.conftest import CANARY_KEY, materialize, materialize_report, query


def test_too_many_failures_fail_the_step_with_a_clear_message(duel_env, instance):
    cfg = duel_env["config"]
    cfg.write_text(cfg.read_text().replace('model = "standin-generator"', 'model = "standin-always-500"')
                   .replace("retry_budget = 4", "retry_budget = 2"))
    res = materialize(instance, "p", raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    assert "king_answers: 6/6 calls failed" in msg and "challenger_answers: 6/6 calls failed" in msg
    assert "max_failure_rate" in msg
    # the judges had nothing to compare: judge_scores fails too, with the reason, and writes no rows
    assert "judge_scores: not written because its answers failed" in msg
    from duel_assets_tests.conftest import query
    assert query(duel_env["home"], "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_scores'") == [(0,)]


def _all_text_cells(home: Path) -> str:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        parts = []
        for t, c in con.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='duel'").fetchall():
            parts += [str(v) for (v,) in con.execute(f'SELECT "{c}" FROM duel.{t}').fetchall()]
        return "\n".join(parts)
    finally:
        con.close()


def test_canary_key_is_never_written(duel_env, instance, capfd, caplog):
    home = duel_env["home"]
    duel_env["standin"].state.fault_rate = 0.2  # a faulty run: retries, timeouts and garbage on the way
    cfg = duel_env["config"]
    # require_gate off and every bucket exported: the shards are written whatever the verdicts, and searched below
    cfg.write_text(cfg.read_text().replace("timeout_s = 5", "timeout_s = 1")
                   + '\n[export]\nrequire_gate = false\nbuckets = ["final", "refined", "defeat"]\n')
    materialize(instance, "prompts_12_000")
    duel_env["standin"].state.fault_rate = 0.0
    materialize_report(instance)
    assert (home / "report" / "report.md").exists() and any((home / "export").rglob("*.parquet"))
    # a provider that echoes the key in its error text, recorded on every row
    cfg.write_text(cfg.read_text().replace('model = "standin-generator"', 'model = "standin-auth-echo"')
                   .replace("timeout_s = 1", "timeout_s = 1\nmax_failure_rate = 1.0"))
    res = materialize(instance, "prompts_12_001", raise_on_error=False)
    errs = query(home, "SELECT error FROM duel.king_answers WHERE prompt_file='prompts_12_001'")
    assert errs and all("Incorrect API key provided: Bearer ***" in e for (e,) in errs)
    captured = capfd.readouterr()
    places = {"stdout": captured.out, "stderr": captured.err, "log records": caplog.text,
              "table cells": _all_text_cells(home)}
    for root in (home, Path(os.environ["DAGSTER_HOME"])):
        for f in root.rglob("*"):
            if f.is_file():
                places[str(f)] = f.read_bytes().decode("latin-1")
    for name, text in places.items():
        assert CANARY_KEY not in text, f"API key found in {name}"
    for ev in res.all_events:
        assert CANARY_KEY not in str(ev), "API key in a Dagster event"
    assert len(places) > 10  # the instance's storage and logs really were searched


def test_judging_alone_with_no_answers_fails_with_the_reason(duel_env, instance):
    res = materialize(instance, "p", selection=["sampled_turns", "pr_records", "judge_scores"], raise_on_error=False)
    assert not res.success
    failure = next(e for e in res.all_events if e.is_step_failure and e.step_key == "duel_calls")
    msg = failure.event_specific_data.error.message
    assert "partition 'p' has no turn with both answers" in msg and "materialize king_answers and challenger_answers first" in msg
    from duel_assets_tests.conftest import query
    assert query(duel_env["home"], "SELECT count(*) FROM information_schema.tables WHERE table_name = 'judge_scores'") == [(0,)]
    assert duel_env["standin"].state.stats()["requests"] == 0
