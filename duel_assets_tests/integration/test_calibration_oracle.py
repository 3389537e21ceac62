"""The stand-in's judge oracle: which pair a request is about, what it answers, and the command line."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from duel_assets.devtools.ports import free_port
from duel_assets.lib.calibration.judging import jobs_for_pair
from duel_assets.lib.calibration.oracle import JudgeOracle
from duel_assets.lib.calibration.pairs import read_set
from duel_assets.lib.settings import ChainConfig
from duel_assets.lib.verdict.replies import parse_judge_reply
from duel_assets_tests.conftest import FIXTURES

FIXTURE = FIXTURES / "calibration_user.jsonl"


def bodies(pair, model="judge-m", max_history_chars=24_000):
    cfg = ChainConfig()
    cfg.judges.max_history_chars = max_history_chars
    return [{"model": model, "messages": j.request.messages, **j.request.params} for j in jobs_for_pair(pair, cfg, [model])]


def winner_side(reply: dict, body_index: int) -> str:
    """a / b / tie from a reply to the a_first (0) or b_first (1) request."""
    w = reply["winner"]
    return "tie" if w == "tie" else ("a" if (w == "A") == (body_index == 0) else "b")


def test_a_perfect_oracle_follows_labels_and_metric_labels_in_both_orders():
    pairs = read_set(FIXTURE).pairs
    o = JudgeOracle(pairs, accuracy=1.0)
    for p in pairs:
        for i, body in enumerate(bodies(p)):
            reply = o.verdict(body)
            assert parse_judge_reply(json.dumps(reply)).parsed
            assert winner_side(reply, i) == {"A": "a", "B": "b", "tie": "tie"}[p.label], p.id
            for m, lab in p.metric_labels.items():
                cell = reply["scores"][m]
                want = "tie" if lab == "tie" else ("A" if (lab == "A") == (i == 0) else "B")
                got = "tie" if cell["A"] == cell["B"] else max(cell, key=cell.get)
                assert got == want, (p.id, m)


def test_decisions_are_deterministic_per_body_and_seed():
    pairs = read_set(FIXTURE).pairs
    o, again, other = JudgeOracle(pairs, 0.5, 0.5), JudgeOracle(pairs, 0.5, 0.5), JudgeOracle(pairs, 0.5, 0.5, seed=7)
    all_bodies = [b for p in pairs for b in bodies(p)]
    first = [o.verdict(b) for b in all_bodies]
    assert first == [o.verdict(b) for b in all_bodies] == [again.verdict(b) for b in all_bodies]
    assert first != [other.verdict(b) for b in all_bodies]
    always_a = JudgeOracle(pairs, 1.0, position_bias=1.0)
    assert {always_a.verdict(b)["winner"] for b in all_bodies} == {"A"}


def test_requests_about_other_pairs_are_left_to_the_stand_in():
    pairs = read_set(FIXTURE).pairs
    o = JudgeOracle(pairs[1:], 1.0)
    assert all(o.verdict(b) is None for b in bodies(pairs[0]))
    assert o.verdict({"model": "m", "messages": [{"role": "user", "content": "hello"}]}) is None


def test_trimmed_histories_still_identify_the_pair():
    pairs = read_set(FIXTURE).pairs
    o = JudgeOracle(pairs, 1.0)
    for p in pairs:
        reply = o.verdict(bodies(p, max_history_chars=120)[0])
        assert f"labelled pair {p.id}," in reply["reason"]



def test_standin_command_line_serves_the_oracle(tmp_path):
    exe = Path(sys.executable).parent / "duel-assets"
    port = free_port()
    proc = subprocess.Popen([str(exe), "standin", "--port", str(port), "--labels", str(FIXTURE), "--judge-accuracy", "1",
                             "--position-bias", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert "judge oracle: 8 labelled pairs" in proc.stdout.readline()
        pair = read_set(FIXTURE).pairs[0]
        body = json.dumps(bodies(pair)[1]).encode()
        for _ in range(50):
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                reply = json.loads(urllib.request.urlopen(req, timeout=5).read())
                break
            except OSError:
                time.sleep(0.1)
        verdict = json.loads(reply["choices"][0]["message"]["content"])
        assert "judge oracle" in verdict["reason"] and verdict["winner"] == "B"  # u1: a is better, shown second
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = subprocess.run([str(exe), "standin", "--judge-accuracy", "0.8"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "need --labels FILE" in bad.stderr
