"""The stand-in's HTTP server: an OpenAI-compatible endpoint on loopback that is NOT a model.

``POST /v1/chat/completions`` answers whole or streamed (``"stream": true``: server-sent events,
chunked, with no silence longer than ``stream_chunk_s``). Every reply says it is not a model: the
``system_fingerprint`` is ``duel-standin-not-a-model`` and the header ``X-Duel-Standin`` is set.
Test hooks: ``GET /_standin/log`` (every request), ``GET /_standin/stats`` (counts, see
:mod:`.provider`), ``POST /_standin/script`` (exact faults), ``/_standin/reset``, ``/_standin/limits``; in process,
``state.bodies = []`` keeps every chat request's body as the bytes received.
"""
from __future__ import annotations

import json
import math
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .provider import FAULT_KINDS, StandinState, body_key, message_pieces, pieces_chars
from .replies import completion, stream_events


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

    def _head(self, status: int, headers: dict | None, content_type: str = "application/json", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.send_header("X-Duel-Standin", "not a model")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, payload: Any, headers: dict | None = None, raw: bytes | None = None,
              content_type: str = "application/json") -> bool:
        body = raw if raw is not None else json.dumps(payload).encode()
        self._leaving()
        try:
            self._head(status, headers, content_type=content_type, length=len(body))
            self.wfile.write(body)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        self._raw = raw
        return json.loads(raw or b"{}")

    def do_GET(self):
        if self.path in ("/health", "/"):
            self._send(200, {"ok": True, "what": "duel-assets stand-in, not a model"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model", "owned_by": "duel-standin-not-a-model"}]})
        elif self.path == "/_standin/log":
            with self.state.lock:
                payload = {"log": list(self.state.log), "connections": self.state.connections}
            self._send(200, payload)
        elif self.path == "/_standin/stats":
            self._send(200, self.state.stats())
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _control(self, body: dict) -> None:
        st = self.state
        if self.path == "/_standin/script":
            faults = [str(x) for x in body.get("faults", [])]
            unknown = [f for f in faults if f != "ok" and f not in FAULT_KINDS]
            if unknown:
                self._send(400, {"error": {"message": f"unknown fault {unknown[0]!r}: one of ok, {', '.join(FAULT_KINDS)}"}})
                return
            with st.lock:
                st.script.extend(faults)
                n = len(st.script)
            self._send(200, {"queued": n})
        elif self.path == "/_standin/reset":
            st.reset()
            self._send(200, {"ok": True})
        elif self.path == "/_standin/limits":
            st.set_limits(float(body.get("rpm") or 0), float(body.get("tpm") or 0))
            self._send(200, {"rpm": st.rpm, "tpm": st.tpm})
        else:
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})

    def do_POST(self):
        arrived = time.monotonic()
        try:
            body = self._body()
        except (json.JSONDecodeError, ValueError):
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        if self.path.startswith("/_standin/"):
            self._control(body)
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        if self.state.bodies is not None:
            with self.state.lock:
                self.state.bodies.append(self._raw)
        self.state.started()
        self._counted = True
        try:
            self._chat(body, arrived)
        finally:
            self._leaving()

    def _leaving(self) -> None:
        """The reply's last bytes are about to leave: the request stops counting as in flight now,
        before the client can read its end (and, if it keeps a bound, send its next request)."""
        if getattr(self, "_counted", False):
            self._counted = False
            self.state.finished()

    def _chat(self, body: dict, arrived: float) -> None:
        st = self.state
        key = body_key(body)
        if body.get("model") == "standin-auth-echo":  # a provider that echoes the key in its error
            self._send(401, {"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}})
            return
        if body.get("model") == "standin-no-stream" and body.get("stream"):  # a deployment that refuses streaming
            self._send(400, {"error": {"message": "stream=true is not supported by this deployment (stand-in)",
                                       "type": "invalid_request_error"}})
            return
        pieces = message_pieces(body)  # each message serialised once, for the estimate, usage and the prefix cache
        chars = pieces_chars(pieces)
        est = chars // 4 + int(body.get("max_tokens") or 0)
        entry = {"key": key, "call_key": self.headers.get("X-Duel-Call-Key"), "model": body.get("model"), "t": time.time(),
                 "stream": bool(body.get("stream"))}
        wait, limit_headers = st.admit(est)
        if wait:
            entry.update(status=429, fault="rate_limit")
            st.record(entry)
            self._send(429, {"error": {"message": "rate limited (stand-in)", "type": "rate_limit"}},
                       headers={**limit_headers, "Retry-After": f"{wait:.3f}", "retry-after-ms": str(math.ceil(wait * 1000))})
            return
        fault = "500" if body.get("model") == "standin-always-500" else st.decide(key)
        entry["fault"] = fault
        if fault:
            with st.lock:
                st.counts[f"fault:{fault}"] += 1
        resp: dict | None = None
        if fault is None:  # the reply is made inside the latency window, ready to go
            resp, with_usage = completion(body, st.oracle.verdict if st.oracle is not None else None, key=key, prompt_chars=chars)
            usage = resp["usage"]
            usage["prompt_tokens_details"] = {"cached_tokens": st.cached_tokens(body, pieces)}
            if not with_usage:
                resp.pop("usage")
            latency = st.latency_s(usage["prompt_tokens"], usage["completion_tokens"])
        else:
            latency = st.latency_s(0, 0)
        if resp is not None and body.get("stream"):
            self._stream(resp, entry, key, arrived, latency, limit_headers)
            return
        self._hold(arrived, latency)
        if fault == "429":
            entry["status"] = 429
            st.record(entry)
            self._send(429, {"error": {"message": "rate limited (stand-in)", "type": "rate_limit"}},
                       headers={"Retry-After": f"{st.retry_after_s:g}"})
        elif fault == "500":
            entry["status"] = 500
            st.record(entry)
            self._send(500, {"error": {"message": "internal error (stand-in)"}})
        elif fault == "timeout":
            entry["status"] = 0
            st.record(entry)
            time.sleep(st.timeout_sleep_s)
            self._send(504, {"error": {"message": "too late (stand-in)"}})
        elif fault == "garbage":
            entry.update(status=200, garbage=True)
            st.record(entry)
            self._send(200, None, raw=b"<html>upstream garbage", content_type="text/html")
        else:
            assert resp is not None  # no fault: scripted faults are checked when queued
            entry["status"] = 200
            st.answered_body(key, resp.get("usage", {}).get("prompt_tokens", 0),
                             resp.get("usage", {}).get("prompt_tokens_details", {}).get("cached_tokens", 0))
            st.record(entry)
            self._send(200, None, raw=json.dumps(resp).encode(), headers=limit_headers)

    @staticmethod
    def _hold(since: float, latency: float) -> None:
        """Sleep out the rest of the latency window that began when the request arrived: the reply
        leaves ``latency`` after arrival, whatever the stand-in's own work took."""
        rest = latency - (time.monotonic() - since)
        if rest > 0:
            time.sleep(rest)

    def _stream(self, resp: dict, entry: dict, key: str, arrived: float, latency: float, headers: dict) -> None:
        """The reply as server-sent events spread over the latency window: one write every
        ``stream_chunk_s`` (the events due by then, coalesced, as a server's socket would send them),
        the last at ``latency``; a client that leaves mid-stream is not billed for the rest."""
        st = self.state
        writes = max(1, math.ceil(latency / st.stream_chunk_s)) if latency > 0 else 1
        events = stream_events(resp, writes)
        lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
        per = -(-len(lines) // writes)
        groups = [b"".join(lines[i:i + per]) for i in range(0, len(lines), per)]
        entry["status"] = 200
        try:
            for i, chunk in enumerate(groups):
                self._hold(arrived, latency * (i + 1) / len(groups))
                last = i == len(groups) - 1
                if last:  # the whole reply is made: billed, and counted before the client can see its end
                    usage = resp.get("usage", {})
                    st.answered_body(key, usage.get("prompt_tokens", 0),
                                     usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
                    st.record(entry)
                if i == 0:
                    self._head(200, headers, content_type="text/event-stream")
                if last:
                    self._leaving()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" + (b"0\r\n\r\n" if last else b""))
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            if "abandoned" not in entry and entry not in st.log:
                entry["abandoned"] = True
                st.record(entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # read by listen() at bind time: a burst of 64+ connects must not drop SYNs

    def handle_error(self, request, client_address):
        """A client that resets its connection is one line on stderr, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)):
            print(f"stand-in: client {client_address[0]}:{client_address[1]} closed the connection "
                  f"({type(exc).__name__})", file=sys.stderr)
            return
        print(f"stand-in: error serving {client_address[0]}:{client_address[1]}: {type(exc).__name__}: {exc}", file=sys.stderr)


class StandinServer:
    """Runs the stand-in in a background thread: ``with StandinServer() as s: s.base_url``."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **state_kwargs: Any):
        import threading

        self.state = StandinState(**state_kwargs)
        self.httpd = _Server((host, port), _Handler)
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="duel-standin", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StandinServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_forever(port: int, **state_kwargs: Any) -> None:
    srv = StandinServer(port=port, **state_kwargs)
    st = srv.state
    limits = f" rpm={st.rpm:g} tpm={st.tpm:g}" if st.rpm or st.tpm else ""
    print(f"duel-assets stand-in (NOT a model) on {srv.base_url}  latency={st.latency_ms}ms "
          f"fault_rate={st.fault_rate}{limits}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.httpd.server_close()
