"""The endpoint is part of a call's identity: a reply bought from one endpoint (or answered by the
offline stand-in) is never served for another; `duel-assets calls` lists and removes an endpoint's
calls; a calibration names where its judges were asked."""
import json
import os
import sqlite3
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from duel_assets.cli import main
from duel_assets.devtools.standin import StandinServer
from duel_assets.lib.calibration.oracle import JudgeOracle
from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint, endpoint_id
from duel_assets_tests.conftest import CANARY_KEY, EXE, FIXTURES, TEST_CHAIN

FIXTURE = FIXTURES / "calibration_user.jsonl"


class ModelServer:
    """An OpenAI-compatible server that is not the stand-in: every chat request counted."""

    def __init__(self, port: int = 0):
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "acme"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                self._json({"id": "x", "object": "chat.completion", "model": "acme-1", "system_fingerprint": "fp_acme",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": "a model's reply"}}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 4}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reqs(n: int) -> list[CallRequest]:
    return [CallRequest("king", "m", [{"role": "user", "content": f"q {i}"}], {}) for i in range(n)]


def test_stand_in_replies_are_never_served_to_a_server_that_is_not_the_stand_in(tmp_path):
    cfg = CallsConfig(timeout_s=5)
    srv = StandinServer().start()
    port, url = srv.port, srv.base_url
    (first, _) = LLMCaller(Endpoint(url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite")).run(_reqs(4))
    srv.stop()
    assert all(r.ok and r.standin for r in first)
    lines: list[str] = []
    with ModelServer(port) as model:  # something else now answers at the stand-in's address
        caller = LLMCaller(Endpoint(url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"), log=lines.append)
        results, stats = caller.run(_reqs(4))
        assert model.requests == 4 and stats.cache_hits == 0
        assert all(r.ok and not r.standin and r.content == "a model's reply" for r in results)
        assert any("is no longer the offline stand-in: its 4 stored stand-in replies were removed" in x for x in lines)
        again, stats = caller.run(_reqs(4))  # the model's replies are kept and reused
        assert model.requests == 4 and stats.cache_hits == 4 and not any(r.standin for r in again)


def test_a_store_from_before_endpoints_keeps_its_calls_apart_and_can_drop_them(fresh_standin, tmp_path, monkeypatch, capsys):
    old = tmp_path / "home" / "cache" / "llm_calls.sqlite"
    old.parent.mkdir(parents=True)
    req = _reqs(1)[0]
    con = sqlite3.connect(old)  # the schema before the endpoint was recorded, one call in it
    con.execute("CREATE TABLE calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, created REAL, response TEXT)")
    con.execute("INSERT INTO calls VALUES (?, 'king', 'm', 0, ?)", (req.key, json.dumps({"content": "old"})))
    con.commit()
    con.close()
    (r,), stats = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), CallsConfig(timeout_s=5), CallStore(old)).run([req])
    assert r.ok and r.content != "old" and stats.completed == 1  # bought from this endpoint, not reused
    monkeypatch.setenv("DUEL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUEL_CALL_CACHE", raising=False)
    assert main(["calls"]) == 0
    out = capsys.readouterr().out
    assert endpoint_id(fresh_standin.base_url) in out and "unknown" in out and "never reused" in out
    assert main(["calls", "--remove-endpoint", "unknown"]) == 0
    assert "removed 1 calls of unknown" in capsys.readouterr().out
    assert main(["calls", "--remove-endpoint", "http://nowhere.example/v1"]) == 1
    assert f"endpoints in the store: {endpoint_id(fresh_standin.base_url)}" in capsys.readouterr().err


def test_run_and_calibrate_on_a_second_endpoint_send_it_every_request(tmp_path):
    cfg = tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_BASE_URL", "_API_KEY")) and not k.startswith(("DUEL_", "DAGSTER_"))}
    env.update(DUEL_HOME=str(tmp_path / "duel"), DUEL_CONFIG=str(cfg), LLM_API_KEY=CANARY_KEY, DUEL_PROGRESS="0")

    def cli(url: str, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(EXE), *args], env={**env, "LLM_BASE_URL": url}, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out

    oracle = JudgeOracle.from_file(FIXTURE, accuracy=1.0)
    with StandinServer(oracle=oracle) as a, StandinServer(oracle=oracle) as b:
        cli(a.base_url, "run", "--partition", "prompts_6_000", "--sample-new")
        bought = a.state.stats()["distinct_bodies_answered"]
        assert bought > 12 and b.state.stats()["requests"] == 0
        cli(b.base_url, "run", "--partition", "prompts_6_000")
        sb = b.state.stats()
        assert sb["distinct_bodies_answered"] == bought and sb["repeats"] == 0  # B was sent every request
        assert a.state.stats()["distinct_bodies_answered"] == bought  # and A nothing more
        cli(b.base_url, "run", "--partition", "prompts_6_000")
        assert b.state.stats()["requests"] == sb["requests"]  # B's own replies are reused for B

        cli(a.base_url, "calibrate", str(FIXTURE), "--json")
        judged = a.state.stats()["distinct_bodies_answered"] - bought
        assert judged == 16  # 8 pairs x 1 judge x 2 orders
        summary = json.loads(cli(b.base_url, "calibrate", str(FIXTURE), "--json").stdout)
        assert b.state.stats()["distinct_bodies_answered"] - bought == 16  # B judged every pair itself
        assert summary["endpoint"] == endpoint_id(b.base_url) and summary["panel"] == ["standin-judge-1"]
        assert summary["answered"] == summary["answered_by_standin"] == 16 and summary["standin"] is True

        cli(b.base_url, "run", "--partition", "prompts_6_000")  # the report and the card carry the evidence
        home = tmp_path / "duel"
        for doc in (home / "report" / "report.md", home / "export" / "README.md"):
            line = next(x for x in doc.read_text().splitlines() if x.startswith("Judge panel calibration"))
            assert f"at {endpoint_id(b.base_url)}, answered by the offline stand-in (not a model)" in line, doc

        listing = cli(b.base_url, "calls").stdout
        assert endpoint_id(a.base_url) in listing and endpoint_id(b.base_url) in listing
        removed = cli(b.base_url, "calls", "--remove-endpoint", a.base_url.replace("http://", "http://u:pw@") + "/").stdout
        assert f"of {endpoint_id(a.base_url)}" in removed
        assert endpoint_id(a.base_url) not in cli(b.base_url, "calls").stdout
