"""A real model server: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (a
real 135M model), installed by ``make test-real`` in ``.venv-real``. One partition of 8 tool-calling
turns (the CoderForge fixture, so that the server's tool calls can be in protocol) runs end to end
in DUEL_MODE 2 with king, challenger and two judges on it, two calls in flight; then the judges are
asked again in free text over the same turns (the rate beside the structured one), and a re-run
of the partition buys nothing. The wall time is printed."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.lib.settings import endpoint_id
from duel_assets_tests.conftest import FIXTURES, materialize, metadata, query

REAL = Path(__file__).resolve().parents[2] / ".venv-real"
MODEL = "smollm2"  # the server's alias for the model: what it reports as the model that answered
CHAT_FORMAT = "chatml-function-calling"  # tool calls with tool_choice "auto" or a named function
TABLES = ("sampled_turns", "pr_records", "king_answers", "challenger_answers", "judge_scores", "duel_verdict",
          "exported_buckets")
CALL_ASSETS = ("king_answers", "challenger_answers", "judge_scores")
JUDGES = (MODEL, f"{MODEL}-second")  # two judges, both the server's one model
# small replies keep the run short (the model is slow on a loaded 2-core machine); histories are
# trimmed so that a judge's prompt fits the server's context (the tools alone take 1,759 characters).
# Replies are asked for whole: chatml-function-calling cannot stream a reply to tool_choice "auto"
# (the server fails the stream after its 200, and the connection closes with no event)
FIX = FIXTURES  # the CoderForge test fixture and its PR records
CHAIN = """
[[sources]]
format = "coderforge"
path = "{fixtures}/coderforge_sample.jsonl"

[pr_records]
path = "{fixtures}/tool_pr_records.jsonl"

[sampling]
turns_per_file = 8
seed = 3
max_history_chars = 2000
max_observation_chars = 300

[generation]
model = "smollm2"
temperature = 0.7
max_tokens = 64
max_resamples = 0

[judges]
models = {judges}
max_tokens = 160
position_swap = false
skip_decided = false
structured = {structured}

[calls]
concurrency = 2
stream = false
timeout_s = 300
deadline_s = 1200
retry_budget = 4
backoff_base_s = 0.2
backoff_max_s = 2

[export]
require_gate = false
buckets = ["final", "refined", "defeat"]

[gate]
resamples = 200
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post(url: str, body: dict, timeout: float = 300) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    python, models = REAL / "bin" / "python", sorted((REAL / "models").glob("*.gguf"))
    if not python.exists() or not models:
        pytest.skip(f"{REAL} has no llama-cpp-python server or no GGUF model: `make test-real` installs both")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [str(python), "-m", "llama_cpp.server", "--model", str(models[0]), "--host", "127.0.0.1", "--port", str(port),
           # no prompt-state cache: each cached state holds the prompt's logits (tokens x 49,152 floats),
           # which its 2 GiB bound does not count, and the server grew past 17 GB with it; the model
           # still reuses the longest prefix of the previous prompt without it
           "--n_ctx", "4096", "--n_threads", str(min(2, os.cpu_count() or 1)), "--cache", "False",
           "--model_alias", MODEL, "--chat_format", CHAT_FORMAT]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if _get(f"{base}/models")["data"][0]["id"] == MODEL:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not answer within 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_the_chat_format_returns_tool_calls(llama_server):
    """chatml-function-calling with this model: ``tool_choice: "auto"`` gives real ``tool_calls``."""
    tools = [{"type": "function", "function": {"name": "bash", "description": "run a shell command",
                                                "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                                                               "required": ["command"]}}}]
    reply = _post(f"{llama_server}/chat/completions", {
        "model": MODEL, "max_tokens": 40, "temperature": 0, "tools": tools, "tool_choice": "auto",
        "messages": [{"role": "user", "content": "List the files in the current directory."}]})
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "bash" and isinstance(json.loads(call["function"]["arguments"]), dict)


def test_a_partition_end_to_end_on_a_real_model(llama_server, tmp_path, monkeypatch):
    t0 = time.monotonic()
    home, cfg = tmp_path / "duel", tmp_path / "chain.toml"
    home.mkdir()
    (tmp_path / "dagster_home").mkdir()
    cfg.write_text(CHAIN.format(fixtures=FIX, judges=json.dumps(list(JUDGES)), structured='"auto"'))
    for var in ("LLM_API_KEY", "CHUTES_BASE_URL", "CHUTES_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "DUEL_MODE",
                "DUEL_PROGRESS", "DUEL_WAREHOUSE", "DUEL_CALL_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DUEL_HOME", str(home))
    monkeypatch.setenv("DUEL_CONFIG", str(cfg))
    monkeypatch.setenv("LLM_BASE_URL", llama_server)
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        res = materialize(instance, "real")
        first_wall = time.monotonic() - t0
        assert res.success
        for table in TABLES:
            (n,), = query(home, f"SELECT count(*) FROM duel.{table}")
            assert n > 0, f"{table} has no rows"
        (turns,), = query(home, "SELECT count(*) FROM duel.sampled_turns")
        assert turns >= 8
        # every answer is a reply the server completed (none lost in transfer, none failed); most are
        # a tool call in protocol. The rest are the server's own empty replies: asked with
        # tool_choice "auto", chatml-function-calling lets the model pick a tool or a message, and
        # its grammar for the message admits no text (SmolLM2 picks the message, at temperature 0,
        # on some turns of the fixture): stopped, with tokens generated, classified empty_reply
        answered = {}
        for table in ("king_answers", "challenger_answers"):
            (n, failed, unfinished, in_protocol, empty, empty_but_classified), = query(home, (
                "SELECT count(*), count(error_kind), count(*) FILTER (WHERE finish_reason IS NULL OR "
                "coalesce(completion_tokens, 0) = 0), count(*) FILTER (WHERE format_ok AND tool_calls IS NOT NULL), "
                "count(*) FILTER (WHERE coalesce(content, '') = '' AND tool_calls IS NULL), "
                "count(*) FILTER (WHERE coalesce(content, '') = '' AND tool_calls IS NULL AND finish_reason = 'stop' "
                f"AND format_reason = 'empty_reply') FROM duel.{table}"))
            assert n == turns and failed == 0 and unfinished == 0, (table, n, failed, unfinished)
            assert 2 * in_protocol >= turns and empty == empty_but_classified, (table, in_protocol, empty)
            answered[table] = (in_protocol, empty)
        (dueled,), = query(home, "SELECT count(DISTINCT turn_id) FROM duel.judge_scores WHERE parsed")
        assert 2 * dueled >= turns
        # the server's model answered every call, and every call's usage is the server's or estimated and
        # flagged. The server serves its one model under any name asked for and names a whole reply's
        # model as asked: the second judge's calls come back as "smollm2-second"
        for table in CALL_ASSETS:
            asked = "judge" if table == "judge_scores" else "model"
            served = dict(query(home, f"SELECT DISTINCT {asked}, served_model FROM duel.{table} WHERE error_kind IS NULL"))
            expected = dict(zip(JUDGES, JUDGES)) if table == "judge_scores" else {MODEL: MODEL}
            assert served == expected, (table, served)
            (no_usage,), = query(home, f"SELECT count(*) FROM duel.{table} WHERE error_kind IS NULL AND "
                                       "(coalesce(prompt_tokens, 0) = 0 OR coalesce(completion_tokens, 0) = 0) "
                                       "AND NOT coalesce(usage_estimated, false)")
            assert no_usage == 0, table
        md = metadata(res, "judge_scores")
        rates = md["parse_rate_by_judge_and_format"]
        structured = _rate(rates, ("json_schema", "json_object"))
        learnt = {a: metadata(res, a)["llm_downgrades"] for a in CALL_ASSETS}
        in_effect = {a: metadata(res, a)["llm_downgrades_in_effect"] for a in CALL_ASSETS}

        # the judges again, in free text, over the same turns and answers (bought above: from the call store)
        home2 = tmp_path / "free_text"
        (home2 / "prompt").mkdir(parents=True)
        shutil.copy(home / "prompt" / "real.json", home2 / "prompt" / "real.json")  # the same turns
        cfg.write_text(CHAIN.format(fixtures=FIX, judges=json.dumps(list(JUDGES)), structured="false"))
        monkeypatch.setenv("DUEL_HOME", str(home2))
        monkeypatch.setenv("DUEL_CALL_CACHE", str(home / "cache" / "llm_calls.sqlite"))
        free = materialize(instance, "real")
        assert free.success
        for asset in ("king_answers", "challenger_answers"):
            assert metadata(free, asset)["llm_calls_made"] == 0
        free_rates = metadata(free, "judge_scores")["parse_rate_by_judge_and_format"]
        free_text = _rate(free_rates, ("text",))

        # the first partition again: nothing bought
        cfg.write_text(CHAIN.format(fixtures=FIX, judges=json.dumps(list(JUDGES)), structured='"auto"'))
        monkeypatch.setenv("DUEL_HOME", str(home))
        monkeypatch.delenv("DUEL_CALL_CACHE")
        again = materialize(instance, "real")
        assert again.success
        assert {a: metadata(again, a)["llm_calls_made"] for a in CALL_ASSETS} == {a: 0 for a in CALL_ASSETS}
    wall = time.monotonic() - t0
    print(f"\nreal server {endpoint_id(llama_server)} ({MODEL}, {CHAT_FORMAT}): {turns} turns, concurrency 2")
    print("  answers with a tool call in protocol: " + ", ".join(f"{t} {a[0]}/{turns} ({a[1]} empty from the server)"
                                                               for t, a in answered.items()) + f"; {dueled} turns judged")
    print(f"  judge parse rate: structured {structured[0]}/{structured[1]} = {structured[2]:.2f}   "
          f"free text {free_text[0]}/{free_text[1]} = {free_text[2]:.2f}")
    print(f"  per judge and format: structured {json.dumps(rates)}  free text {json.dumps(free_rates)}")
    print(f"  learnt from the server: {json.dumps(learnt)}; in effect: {json.dumps(in_effect)}")
    print(f"  wall time: first run {first_wall:.0f} s, whole test {wall:.0f} s")
    assert structured[1] > 0 and structured[2] >= 0.9, rates


def _rate(rates: dict, formats: tuple[str, ...]) -> tuple[int, int, float]:
    parsed = sum(c["parsed"] for by_format in rates.values() for f, c in by_format.items() if f in formats)
    judged = sum(c["judged"] for by_format in rates.values() for c in by_format.values())
    return parsed, judged, (parsed / judged if judged else 0.0)
