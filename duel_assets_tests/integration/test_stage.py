"""The LLM stage's rules about what is dueled: re-sampling malformed answers, excluded turns, ties."""
import pytest

from duel_assets.lib.calls import CallStore, LLMCaller
from duel_assets.lib.duel.judging import judge_jobs_for_turn
from duel_assets.lib.duel.stage import run_stage
from duel_assets.lib.settings import CallsConfig, ChainConfig, Endpoint
from duel_assets.lib.turn import Turn
from duel_assets.lib.verdict.verdicts import verdict_rows

PR = {"missing": False, "repo": "a/b", "problem_statement": "fix it", "pr_description": "", "patch": "diff --git a/x.py b/x.py",
      "changed_files": '["x.py"]'}


def _turns(n: int = 3) -> list[Turn]:
    hist = [{"role": "system", "content": "rules"}, {"role": "user", "content": "Fix the bug in x.py"}]
    return [Turn(f"t{i}", f"inst{i}", None, "swe_zero", f"tr{i}", 0, "bash_block",
                 hist + [{"role": "assistant", "content": f"look {i}\n```bash\nls\n```"}, {"role": "user", "content": "ok"}],
                 {"role": "assistant", "content": "THOUGHT: x\n```bash\nls\n```"}) for i in range(n)]


def _run(srv, tmp_path, cfg: ChainConfig, turns, prs, roles=("king", "challenger", "judge"), mode=2):
    cfg.calls = CallsConfig(concurrency=4, timeout_s=5, retry_budget=2, backoff_base_s=0.01)
    caller = LLMCaller(Endpoint(srv.base_url, "k", "LLM"), cfg.calls, CallStore(tmp_path / "c.sqlite"))
    return run_stage(caller, turns, cfg, prs, mode, set(roles))


def test_a_malformed_answer_is_sampled_again_and_the_well_formed_one_is_dueled(fresh_standin, tmp_path):
    cfg = ChainConfig()
    cfg.generation.model = "standin-quirk-malformed-unseeded"  # two actions unless the request carries a seed
    cfg.judges.models = ["standin-judge-1"]
    turns = _turns()
    res = _run(fresh_standin, tmp_path, cfg, turns, {t.instance_id: PR for t in turns})
    for role in ("king", "challenger"):
        rows = res.rows[role]
        assert all(r["format_ok"] and r["sample_index"] == 1 and r["excluded_reason"] is None for r in rows), rows
        assert res.stats[role].resamples == 3 and res.stats[role].requested == 6
    assert all(r["parsed"] for r in res.rows["judge"])
    assert fresh_standin.state.stats()["repeats"] == 0  # the re-sample is a different request (seed), not a repeat


def test_a_king_still_malformed_is_not_dueled(fresh_standin, tmp_path):
    cfg = ChainConfig()
    cfg.generation.model = "standin-quirk-multi"  # always two actions
    cfg.generation.max_resamples = 2
    cfg.judges.models = ["standin-judge-1"]
    turns = _turns(2)
    res = _run(fresh_standin, tmp_path, cfg, turns, {t.instance_id: PR for t in turns})
    assert [r["excluded_reason"] for r in res.rows["king"]] == ["king_malformed"] * 2
    assert all(r["sample_index"] == 2 for r in res.rows["king"])
    assert {r["error"] for r in res.rows["judge"]} == {"king_malformed"}
    assert res.judge_skips == {"king_malformed": 2} and res.stats["judge"].requested == 0


def test_excluded_instances_and_turns_without_hidden_information_are_not_dueled(fresh_standin, tmp_path):
    cfg = ChainConfig()
    cfg.generation.model = "standin-generator"
    cfg.judges.models = ["standin-judge-1"]
    cfg.excluded_instance_ids = ["inst0"]
    turns = _turns(3)
    prs = {"inst0": PR, "inst1": PR, "inst2": {"missing": True}}
    res = _run(fresh_standin, tmp_path, cfg, turns, prs)
    reasons = {r["turn_id"]: r["excluded_reason"] for r in res.rows["king"]}
    assert reasons == {"t0": "excluded_instance", "t1": None, "t2": "no_hidden_info"}
    assert res.judge_skips == {"excluded_instance": 1, "no_hidden_info": 1}
    # configured to duel them anyway: the turn without hidden information is dueled
    cfg.hidden_info.when_missing = "duel"
    res = _run(fresh_standin, tmp_path, cfg, turns, prs)
    assert {r["turn_id"]: r["excluded_reason"] for r in res.rows["king"]}["t2"] is None


def test_identical_actions_are_a_tie_without_judges(fresh_standin, tmp_path):
    import pandas as pd

    from duel_assets.lib import tables

    cfg = ChainConfig()
    cfg.generation.model = "standin-generator"
    cfg.judges.models = ["standin-judge-1"]
    turns = _turns(2)
    same = {"format_ok": True, "action": "ls -la", "content": "THOUGHT: look\n```bash\nls -la\n```", "error_kind": None}
    stored = {t.turn_id: dict(same, turn_id=t.turn_id) for t in turns}
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), CallsConfig(timeout_s=5), CallStore(tmp_path / "c.sqlite"))
    res = run_stage(caller, turns, cfg, {t.instance_id: PR for t in turns}, 2, {"judge"}, stored, stored)
    assert res.judge_skips == {"identical_answers": 2} and fresh_standin.state.stats()["requests"] == 0
    verdicts = verdict_rows(pd.DataFrame(res.rows["judge"], columns=tables.columns("judge_scores")),
                                 pd.DataFrame(list(stored.values())), [t.turn_id for t in turns], cfg)
    assert [(v["score"], v["bucket"], v["parsed"]) for v in verdicts] == [(50.0, "defeat", True)] * 2


@pytest.mark.parametrize("mode", [1, 2])
def test_judge_requests_carry_the_turns_tools_and_answer_in_text(fresh_standin, tmp_path, mode):
    tools = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                                                                             "required": ["command"]}}}]
    t = Turn("tt", "inst", None, "coderforge", "tr", 0, "tool_calls",
             [{"role": "system", "content": "rules"}, {"role": "user", "content": "Fix x.py"}],
             {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]},
             tools=tools)
    cfg = ChainConfig()
    cfg.generation.model = "standin-generator"
    cfg.judges.models = ["standin-judge-1"]
    res = _run(fresh_standin, tmp_path, cfg, [t], {"inst": PR}, mode=mode)
    assert all(r["parsed"] for r in res.rows["judge"])
    judge_calls = [e for e in fresh_standin.state.log if e["model"] == "standin-judge-1"]
    assert len(judge_calls) == 2
    king = next(r for r in res.rows.get("king", [{}]) if r) if mode == 2 else None
    chal = res.rows["challenger"][0]
    jobs = judge_jobs_for_turn(t, king, chal, PR, cfg, mode)
    assert all(j.request.tools == tools and j.request.params["tool_choice"] == "none" for j in jobs)
