"""The whole graph under injected faults, and four run processes writing one warehouse at once."""
import os
import subprocess

from duel_assets_tests.conftest import EXE, TEST_CHAIN, materialize, metadata, query, standin_post, table_rows


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
