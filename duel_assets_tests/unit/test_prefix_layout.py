"""The prefix layout a provider's prompt cache reads: every request about one turn starts with the
same bytes (tools, then the turn's own history), the challenger's and the judges' go on with the
same PR record, and a judge's two orders share everything up to the answers."""
import json
import os

from duel_assets.lib.calls import CallResult
from duel_assets.lib.calls.wire import request_body
from duel_assets.lib.duel.answers import answer_row, plan_generation
from duel_assets.lib.duel.judging import judge_jobs_for_turn
from duel_assets.lib.settings import parse_config
from duel_assets.lib.turn import Turn

TOOLS = [{"type": "function", "function": {"name": "bash", "description": "run a command",
                                           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]


def _turn() -> Turn:
    call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": "ls"})}}
    history = [{"role": "system", "content": "You are a coding agent. Use the tools."},
               {"role": "user", "content": "Fix the failing test in utils.py"},
               {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
               {"role": "tool", "content": "utils.py\ntest_utils.py", "tool_call_id": "c1"}]
    return Turn("t1", "acme__widgets-1", None, "swe_zero", "tr1", 2, "tool_calls", history, {}, tools=TOOLS)


def _row(role: str, planned, command: str) -> dict:
    tool_calls = [{"id": "x", "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": command})}}]
    return answer_row(role, planned, CallResult.from_cache(planned.request.key, {"content": "", "tool_calls": tool_calls}))


def _wire(req) -> bytes:
    """The body as the call layer posts it."""
    return json.dumps(request_body(req, stream=True), separators=(",", ":")).encode()


def _messages_bytes(req, n: int) -> bytes:
    return json.dumps(req.messages[:n], separators=(",", ":"), ensure_ascii=False).encode()


def test_every_request_about_a_turn_starts_with_the_same_bytes():
    cfg = parse_config({"judges": {"models": ["judge-a", "judge-b"]}})
    turn = _turn()
    pr = {"instance_id": turn.instance_id, "repo": "acme/widgets", "problem_statement": "utils.add is wrong",
          "patch": "--- a/utils.py\n+++ b/utils.py\n", "changed_files": "[\"utils.py\"]"}
    prs = {turn.instance_id: pr}
    king = plan_generation("king", [turn], cfg, prs)[0]
    chal = plan_generation("challenger", [turn], cfg, prs)[0]
    jobs = judge_jobs_for_turn(turn, _row("king", king, "cat utils.py"), _row("challenger", chal, "pytest -x"), pr, cfg)
    judges = [j.request for j in jobs]
    assert len(judges) == 4 and all(r is not None for r in judges)
    every = [king.request, chal.request, *judges]
    n = len(turn.history)

    # tools first (chat templates render them ahead of the messages): the same for every role; the
    # judges carry them without being able to call them
    assert all(r.tools == TOOLS for r in every)
    assert all(r.params.get("tool_choice") == "none" for r in judges)
    # king and challenger are asked for a tool call outright (what the API defaults to with tools; a
    # llama.cpp server with a function-calling chat format answers in text unless asked)
    assert all(r.params.get("tool_choice") == "auto" and _wire(r).count(b'"tool_choice":"auto"') == 1
               for r in (king.request, chal.request))
    bash_turn = Turn("t2", "acme__widgets-1", None, "swe_zero", "tr1", 2, "bash_block", turn.history[:2], {})
    assert "tool_choice" not in plan_generation("king", [bash_turn], cfg, prs)[0].request.params

    # the history, byte for byte, in every request of every role
    history = _messages_bytes(king.request, n)
    assert all(_messages_bytes(r, n) == history for r in every)
    # then the PR record: the challenger's and every judge's next message is the same
    assert all(_messages_bytes(r, n + 1) == _messages_bytes(chal.request, n + 1) for r in judges)
    assert "pr_record" not in _messages_bytes(king.request, len(king.request.messages)).decode()
    # then the rubric: the same for every judge call of the turn; only the last message (the answers) differs
    rubric = judges[0].messages[n + 1]
    assert all(r.messages[n + 1] == rubric for r in judges) and len({json.dumps(r.messages[-1]) for r in judges}) == 2
    # and the posted messages arrays share that prefix as text (the longest common prefix reaches past it)
    texts = [json.dumps(r.messages, separators=(",", ":"), ensure_ascii=False) for r in judges]
    shared = os.path.commonprefix(texts)
    assert len(shared) >= len(json.dumps(judges[0].messages[: n + 2], separators=(",", ":"), ensure_ascii=False)) - 1
    # the bodies differ, so each is a call of its own
    assert len({_wire(r) for r in every}) == len(every)
