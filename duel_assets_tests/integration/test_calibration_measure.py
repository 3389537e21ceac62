"""The measurement measured: judges of known accuracy and position bias (the stand-in's oracle, over
real HTTP through the real call layer) on 400 pairs made from the bundled samples."""
import pytest

from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.calibration.judging import run_panel
from duel_assets.lib.calibration.make import make_set
from duel_assets.lib.calibration.oracle import JudgeOracle
from duel_assets.lib.calibration.pairs import CalibrationSet, read_set, write_set
from duel_assets.lib.calibration.report import summarise
from duel_assets.lib.calls import CallStore, LLMCaller
from duel_assets.lib.settings import ChainConfig, Endpoint


@pytest.fixture(scope="module")
def set400(tmp_path_factory):
    made = make_set(ChainConfig(), 400)
    path = write_set(tmp_path_factory.mktemp("cal") / "set400.jsonl", made.pairs, made.header)
    cset = read_set(path)
    assert len(cset.pairs) == 400
    return cset


def measure(cset, tmp_path, accuracy, bias=0.0, judges=("standin-judge-1",), seed=0):
    cfg = ChainConfig()
    cfg.judges.models = list(judges)
    cfg.calls.concurrency = 32
    with StandinServer(oracle=JudgeOracle(cset.pairs, accuracy, bias, seed)) as srv:
        caller = LLMCaller(Endpoint(srv.base_url, "test-key", "LLM"), cfg.calls, CallStore(tmp_path / f"c{accuracy}-{bias}-{seed}.sqlite"))
        run = run_panel(caller, cset.pairs, cfg)
        log = list(srv.state.log)
    return summarise(cset, run, cfg, "set400", resamples=500), log


def share_tie(cset) -> float:
    return sum(p.label == "tie" for p in cset.pairs) / len(cset.pairs)


def test_accuracy_of_a_judge_right_80_percent_of_the_time(set400, tmp_path):
    s, log = measure(set400, tmp_path, 0.8)
    assert len(log) == 800 and {e["status"] for e in log} == {200}  # 400 pairs x 2 orders, all over HTTP
    assert s["calls"]["llm_calls_made"] == 800 and s["pairs"] == 400
    assert abs(s["accuracy"] - 0.8) <= 0.05, s["accuracy"]
    lo, hi = s["accuracy_ci"]
    assert lo < s["accuracy"] < hi and hi - lo < 0.15
    assert s["position_consistency"] == 1.0 and s["parse_rate"] == 1.0  # an unbiased judge agrees with itself
    assert 0.5 < s["kappa"] < 0.8
    j = s["per_judge"]["standin-judge-1"]
    assert j["accuracy"] == s["accuracy"] and set(j) >= {"accuracy", "kappa", "position_consistency", "parse_rate"}
    assert s["tokens"]["prompt"] > 0 and s["tokens"]["prompt"] == s["tokens"]["new_prompt"]


def test_position_bias_lowers_consistency_as_defined(set400, tmp_path):
    s, _ = measure(set400, tmp_path, 0.8, bias=0.3)
    t = share_tie(set400)
    expected = (1 - t) * 0.7 + t * 0.7 ** 2  # 1 - Q for A/B pairs, (1 - Q)^2 for tie pairs
    assert abs(s["position_consistency"] - expected) <= 0.06, (s["position_consistency"], expected)
    assert s["per_judge"]["standin-judge-1"]["position_consistency"] == s["position_consistency"]
    lo, hi = s["position_consistency_ci"]
    assert lo <= expected <= hi + 0.02
    assert s["accuracy"] < 0.7  # orders that disagree cancel into ties
    assert s["tie_rate"] > 0.25


def test_a_panel_majority_beats_its_judges(set400, tmp_path):
    s, _ = measure(set400, tmp_path, 0.7, judges=("j-one", "j-two", "j-three"))
    for j in ("j-one", "j-two", "j-three"):
        assert abs(s["per_judge"][j]["accuracy"] - 0.7) <= 0.07
    best_single = max(b["accuracy"] for b in s["per_judge"].values())
    assert s["majority"]["accuracy"] > best_single and s["majority"]["accuracy"] > 0.72  # expected 0.7^3 + 3 * 0.7^2 * 0.3 = 0.784
    assert s["accuracy"] > best_single  # the duel score's own rule pools the cells of all three


def test_a_perfect_and_a_contrary_judge(set400, tmp_path):
    half = CalibrationSet(set400.path, set400.pairs[:200], [])
    s, _ = measure(half, tmp_path, 1.0)
    for name, b in [("duel rule", s), ("majority", s["majority"]), *s["per_judge"].items()]:
        assert b["accuracy"] == b["accuracy_with_ties"] == b["kappa"] == 1.0, name
        assert all(v["accuracy"] == 1.0 for v in b["by_kind"].values())
        assert all(v["agreement"] == 1.0 for v in b["per_metric"].values()) and len(b["per_metric"]) == 5
    th = s["thresholds"]
    assert th["suggested"]["final"] is not None and th["suggested"]["refined"] is not None
    row = next(r for r in th["table"] if r["threshold"] == th["suggested"]["final"])
    assert row["precision_lower95"] >= 0.9 and th["configured"]["final"]["threshold"] == 80.0
    s0, _ = measure(half, tmp_path, 0.0)
    assert s0["accuracy"] == 0.0 and s0["kappa"] < 0
    assert s0["thresholds"]["suggested"] == {"final": None, "refined": None}
