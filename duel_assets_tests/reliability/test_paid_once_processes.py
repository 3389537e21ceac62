"""Eight run processes at once pay each distinct request once, within the deployment's bound
(counted at the endpoint: the stand-in counts answers to a body it had already answered)."""
import os
import subprocess

from duel_assets_tests.conftest import EXE, query


def test_eight_run_processes_at_once_pay_each_body_once_within_the_deployment_bound(duel_env):
    home, srv = duel_env["home"], duel_env["standin"]
    srv.state.latency_ms = 50
    env = {**os.environ, "DUEL_PROGRESS": "0"}
    out = subprocess.run([str(EXE), "sample", "--prompts", "48", "--per-file", "6"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    keys = sorted(p.stem for p in (home / "prompt").glob("*.json"))
    assert len(keys) == 8
    procs = [subprocess.Popen([str(EXE), "run", "--partition", k], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in keys]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    stats = srv.state.stats()
    assert stats["answers"] > 0 and stats["repeats"] == 0, stats
    assert stats["max_in_flight"] <= 8  # calls.concurrency of the test config, for all 8 processes together
    got = query(home, "SELECT prompt_file, count(*) FROM duel.duel_verdict GROUP BY 1 ORDER BY 1")
    assert [k for k, _ in got] == keys
