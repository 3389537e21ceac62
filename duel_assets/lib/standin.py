"""The offline stand-in: a local OpenAI-compatible server that is NOT a model.

It answers ``POST /v1/chat/completions`` deterministically so that the pipeline runs end to end
without a provider (first tries, tests, benchmarks). Every reply says so: the ``system_fingerprint``
is ``duel-standin-not-a-model``, the header ``X-Duel-Standin`` is set, and generated THOUGHTs begin
with "(stand-in reply, not a model)". It binds to loopback only.

* generation requests get one bash block (or one tool call when tools are sent); a request that
  carries a hidden PR record gets a step aimed at the PR's changed files;
* judge requests (their system prompt asks for the "winner" JSON) get scores computed from simple
  heuristics (one well-formed action, naming a changed file);
* latency and faults: ``latency_ms``; ``fault_rate`` of 429 (with Retry-After) / 500 / timeout /
  garbage, decided by a hash of the request and how often it was seen, so every request eventually
  succeeds and runs are repeatable; ``POST /_standin/script`` queues exact faults for tests;
* quirk models for tests: ``standin-quirk-{think,reasoning,control,empty,nousage,length,multi}``,
  ``standin-always-500``, ``standin-auth-echo`` (a 401 that echoes the Authorization header),
  ``standin-judge-{biased-a,garbage,fenced,truncated}``;
* ``GET /_standin/log`` lists every request (key = hash of the body, status, fault).
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NOT_A_MODEL = "duel-standin-not-a-model"
FAULT_KINDS = ("429", "500", "timeout", "garbage")
_PATH_RE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]+\.\w+)")


def _h(*parts: Any) -> int:
    return int(hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


class StandinState:
    def __init__(self, latency_ms: float = 0.0, fault_rate: float = 0.0, faults: tuple[str, ...] = FAULT_KINDS,
                 retry_after_s: float = 0.2, timeout_sleep_s: float = 30.0, log_limit: int = 1_000_000):
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.faults = tuple(f for f in faults if f in FAULT_KINDS) or FAULT_KINDS
        self.retry_after_s = retry_after_s
        self.timeout_sleep_s = timeout_sleep_s
        self.log_limit = log_limit
        self.lock = threading.Lock()
        self.script: list[str] = []
        self.seen: Counter = Counter()
        self.log: list[dict] = []
        self.connections = 0  # TCP connections accepted: shows whether clients keep theirs alive

    def decide(self, key: str) -> str | None:
        with self.lock:
            n = self.seen[key]
            self.seen[key] += 1
            if self.script:
                f = self.script.pop(0)
                return None if f == "ok" else f
        if self.fault_rate <= 0:
            return None
        if (_h(key, n, "fault") % 10_000) / 10_000 < self.fault_rate:
            return self.faults[_h(key, n, "kind") % len(self.faults)]
        return None

    def record(self, entry: dict) -> None:
        with self.lock:
            if len(self.log) < self.log_limit:
                self.log.append(entry)


# ------------------------------------------------------------------ replies


def _text_of(messages: list[dict]) -> str:
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        out.append(c or "")
    return "\n".join(out)


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.DOTALL)
    return m.group(1) if m else ""


def _changed_files(text: str) -> list[str]:
    m = re.search(r"Changed files:\n((?:- .*\n?)+)", text)
    return [l[2:].strip() for l in m.group(1).splitlines() if l.startswith("- ")] if m else []


def _generation(body: dict) -> tuple[str, str]:
    """(thought, command) for a king or challenger request."""
    messages = body.get("messages") or []
    system = _text_of(messages[:1])
    convo = _text_of(messages[1:])
    seen_paths = list(dict.fromkeys(p.lstrip("./") for p in _PATH_RE.findall(convo)))
    h = _h(json.dumps(messages, sort_keys=True))
    if "<hidden_pr_record>" in system:
        targets = _changed_files(_between(system, "hidden_pr_record"))
        visible = [t for t in targets if t in seen_paths]
        if visible:
            return "The file at the centre of the problem is already in view; read it closely.", f"cat -n {visible[0]}"
        if targets and h % 3 == 0:  # sometimes breaks the blind-agent rule, so the leak guard has work
            return "Open the file that most likely holds the bug.", f"cat -n {targets[0]}"
        stem = targets[0].rsplit("/", 1)[-1].split(".")[0] if targets else "main"
        return "Search the tree for the component named in the issue.", f"grep -rn \"{stem}\" . | head -20"
    if seen_paths:
        p = seen_paths[h % len(seen_paths)]
        return "Look at a file that appeared earlier.", f"head -40 {p}"
    generic = ["ls -la", "git status", "find . -type f -not -path './.git/*' | head -40", "git log --oneline -5"]
    return "Get oriented in the repository.", generic[h % len(generic)]


def _judge_scores(body: dict) -> dict:
    text = _text_of(body.get("messages") or [])
    files = _changed_files(_between(text, "reference_pr_record"))
    out: dict[str, dict[str, int]] = {}
    sides = {"A": _between(text, "answer_A"), "B": _between(text, "answer_B")}
    feats = {}
    judge = str(body.get("model") or "")
    for side, ans in sides.items():
        n_blocks = len(re.findall(r"```(?:bash|mswea_bash_command)", ans)) + ans.count("[tool call]")
        hits = sum(1 for f in files if f in ans)
        feats[side] = (n_blocks, hits, _h(judge, ans) % 4)
    metrics = ("correctness", "grounding", "progress", "protocol", "efficiency")
    for m in metrics:
        out[m] = {}
        for side, (n_blocks, hits, jitter) in feats.items():
            base = 4 + jitter
            if m == "protocol":
                v = 9 if n_blocks == 1 else 2
            elif m in ("progress", "correctness"):
                v = base + (3 if hits else 0)
            else:
                v = base
            out[m][side] = max(0, min(10, v))
    tot = {s: sum(out[m][s] for m in metrics) for s in ("A", "B")}
    winner = "A" if tot["A"] > tot["B"] else "B" if tot["B"] > tot["A"] else "tie"
    return {"scores": out, "winner": winner, "reason": "stand-in heuristic (not a model): one well-formed action, aimed at the changed files."}


def _completion(body: dict) -> tuple[dict, bool]:
    """(chat.completion JSON, include usage)."""
    model = str(body.get("model") or "standin")
    messages = body.get("messages") or []
    system = _text_of(messages[:1])
    reasoning = None
    tool_calls = None
    finish = "stop"
    if '"winner"' in system:
        verdict = _judge_scores(body)
        if model == "standin-judge-biased-a":
            verdict["scores"] = {m: {"A": 9, "B": 3} for m in verdict["scores"]}
            verdict["winner"] = "A"
        content = json.dumps(verdict)
        if model == "standin-judge-garbage":
            content = "I think both answers are fine overall."
        elif model == "standin-judge-fenced":
            content = f"<think>compare them</think>Here is my verdict:\n```json\n{content}\n```\nThanks."
        elif model == "standin-judge-truncated":
            content = content[: len(content) // 2]
            finish = "length"
    else:
        thought, command = _generation(body)
        thought = f"(stand-in reply, not a model) {thought}"
        tools = body.get("tools") or []
        if tools:
            fn = next((t["function"] for t in tools if "command" in json.dumps(t.get("function", {}).get("parameters", {}))), tools[0]["function"])
            content = thought
            tool_calls = [{"id": f"call_{_h(command) % 10**8}", "type": "function",
                           "function": {"name": fn["name"], "arguments": json.dumps({"command": command})}}]
            finish = "tool_calls"
        else:
            content = f"THOUGHT: {thought}\n\n```bash\n{command}\n```"
        if model == "standin-quirk-think":
            content = f"<think>private chain of thought</think>{content}"
        elif model == "standin-quirk-reasoning":
            reasoning = "separate reasoning field"
        elif model == "standin-quirk-control":
            content = f"{content}<|tool_calls_section_begin|>"
        elif model == "standin-quirk-empty":
            content = ""
        elif model == "standin-quirk-length":
            content = content[: max(1, len(content) // 3)]
            finish = "length"
        elif model == "standin-quirk-multi":
            content = f"{content}\n\n```bash\nls\n```"
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning
    prompt_chars = len(json.dumps(messages))
    resp = {
        "id": f"standin-{_h(json.dumps(body, sort_keys=True)) % 10**12}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": NOT_A_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4 + 1,
                  "total_tokens": prompt_chars // 4 + len(content) // 4 + 1},
    }
    return resp, model != "standin-quirk-nousage"


class _Handler(BaseHTTPRequestHandler):
    server_version = "duel-standin/1 (not a model)"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: avoid the 40 ms delayed-ACK stall

    @property
    def state(self) -> StandinState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        with self.state.lock:
            self.state.connections += 1

    def _send(self, status: int, payload: Any, headers: dict | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Duel-Standin", "not a model")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        return json.loads(raw or b"{}")

    def do_GET(self):
        if self.path in ("/health", "/"):
            self._send(200, {"ok": True, "what": "duel-assets stand-in, not a model"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model", "owned_by": NOT_A_MODEL}]})
        elif self.path == "/_standin/log":
            with self.state.lock:
                self._send(200, {"log": list(self.state.log), "connections": self.state.connections})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _hold(self, since: float) -> None:
        """Sleep out the rest of the latency window that began when the request arrived: the reply
        leaves ``latency_ms`` after arrival, whatever the stand-in's own work took (a real server's
        latency includes its compute too)."""
        if self.state.latency_ms:
            rest = self.state.latency_ms / 1000.0 - (time.monotonic() - since)
            if rest > 0:
                time.sleep(rest)

    def do_POST(self):
        arrived = time.monotonic()
        try:
            body = self._body()
        except (json.JSONDecodeError, ValueError):
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        if self.path == "/_standin/script":
            with self.state.lock:
                self.state.script.extend(str(x) for x in body.get("faults", []))
            self._send(200, {"queued": len(self.state.script)})
            return
        if self.path == "/_standin/reset":
            with self.state.lock:
                self.state.script.clear()
                self.state.seen.clear()
                self.state.log.clear()
                self.state.connections = 0
            self._send(200, {"ok": True})
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if body.get("model") == "standin-auth-echo":  # a provider that echoes the key in its error
            self._send(401, {"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}})
            return
        fault = "500" if body.get("model") == "standin-always-500" else self.state.decide(key)
        entry = {"key": key, "call_key": self.headers.get("X-Duel-Call-Key"), "model": body.get("model"),
                 "fault": fault, "t": time.time()}
        reply = None
        if fault is None:  # the reply is made inside the latency window, encoded and ready to go
            resp, with_usage = _completion(body)
            if not with_usage:
                resp.pop("usage")
            reply = json.dumps(resp).encode()
        self._hold(arrived)
        if fault == "429":
            entry["status"] = 429
            self.state.record(entry)
            self._send(429, {"error": {"message": "rate limited (stand-in)", "type": "rate_limit"}},
                       headers={"Retry-After": f"{self.state.retry_after_s:g}"})
        elif fault == "500":
            entry["status"] = 500
            self.state.record(entry)
            self._send(500, {"error": {"message": "internal error (stand-in)"}})
        elif fault == "timeout":
            entry["status"] = 0
            self.state.record(entry)
            time.sleep(self.state.timeout_sleep_s)
            self._send(504, {"error": {"message": "too late (stand-in)"}})
        elif fault == "garbage":
            entry["status"] = 200
            entry["garbage"] = True
            self.state.record(entry)
            self._send(200, None, raw=b"<html>upstream garbage")
        else:
            entry["status"] = 200
            self.state.record(entry)
            self._send(200, None, raw=reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # read by listen() at bind time: a burst of 64+ connects must not drop SYNs

    def handle_error(self, request, client_address):
        """A client that resets or drops its connection is logged as one line, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            print(f"stand-in: client {client_address[0]}:{client_address[1]} closed the connection "
                  f"({type(exc).__name__})", file=sys.stderr, flush=True)
            return
        super().handle_error(request, client_address)


class StandinServer:
    """Runs the stand-in in a background thread: ``with StandinServer() as s: s.base_url``."""

    def __init__(self, port: int = 0, **state_kwargs: Any):
        self.state = StandinState(**state_kwargs)
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="duel-standin", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "StandinServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "StandinServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(port: int, **state_kwargs: Any) -> None:
    srv = StandinServer(port=port, **state_kwargs)
    print(f"duel-assets stand-in (NOT a model) on {srv.base_url}  "
          f"latency={srv.state.latency_ms}ms fault_rate={srv.state.fault_rate}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
