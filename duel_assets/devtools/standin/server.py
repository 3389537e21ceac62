"""The stand-in's HTTP server: an OpenAI-compatible endpoint on loopback that is NOT a model.

``POST /v1/chat/completions`` answers whole or streamed (``"stream": true``: server-sent events,
chunked, with no silence longer than ``stream_chunk_s``). Every reply says it is not a model: the
``system_fingerprint`` is ``duel-standin-not-a-model`` and the header ``X-Duel-Standin`` is set.
Test hooks: ``GET /_standin/log`` (every request), ``GET /_standin/stats`` (counts, see
:mod:`.provider`), ``POST /_standin/script`` (exact faults), ``POST /_standin/modes`` (refusals and
broken transfers, :mod:`.modes`), ``POST /_standin/batches`` (the batch API's delay, errors and
expiry, :mod:`.batches`), ``/_standin/reset``, ``/_standin/limits``; ``POST /_standin/bodies``
``{"keep": true}`` keeps every chat request's body and ``GET /_standin/bodies`` returns them (in
process, ``state.bodies = []`` keeps them as the bytes received).
"""
from __future__ import annotations

import json
import math
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import batches
from .modes import STREAM_FAULTS, check_modes, refusal, stream_fault
from .provider import FAULT_KINDS, StandinState, body_key, message_pieces, pieces_chars
from .replies import completion
from .streaming import write_stream


class Handler(BaseHTTPRequestHandler):
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
        if batches.handle(self, "GET"):
            return
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
        elif self.path == "/_standin/bodies":
            with self.state.lock:
                kept = list(self.state.bodies or [])
            self._send(200, None, raw=b"[" + b",".join(kept) + b"]")
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _control(self, body: dict) -> None:
        st = self.state
        if self.path == "/_standin/script":
            faults = [str(x) for x in body.get("faults", [])]
            unknown = [f for f in faults if f != "ok" and f not in (*FAULT_KINDS, *STREAM_FAULTS)]
            if unknown:
                self._send(400, {"error": {"message": f"unknown fault {unknown[0]!r}: one of ok, "
                                                      f"{', '.join((*FAULT_KINDS, *STREAM_FAULTS))}"}})
                return
            with st.lock:
                st.script.extend(faults)
                n = len(st.script)
            self._send(200, {"queued": n})
        elif self.path == "/_standin/modes":
            try:
                st.modes = check_modes(body.get("modes", []))
            except ValueError as e:
                self._send(400, {"error": {"message": str(e)}})
                return
            self._send(200, {"modes": st.modes})
        elif self.path == "/_standin/bodies":
            with st.lock:
                st.bodies = [] if body.get("keep") else None
            self._send(200, {"keep": bool(body.get("keep"))})
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
        if batches.handle(self, "POST"):
            return
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
        # the client that sent it: its User-Agent and the names of its headers (the openai SDK's X-Stainless-*)
        entry = {"key": key, "call_key": self.headers.get("X-Duel-Call-Key"), "model": body.get("model"), "t": time.time(),
                 "stream": bool(body.get("stream")), "user_agent": self.headers.get("User-Agent"),
                 "headers": sorted({k.lower() for k in self.headers})}
        refused = refusal(body, st.modes, self.headers.get("Authorization"))
        if refused is not None:  # a quirk model, or a refusal mode
            st.record({**entry, "status": refused[0], "refused": True})
            self._send(*refused)
            return
        pieces = message_pieces(body)  # each message serialised once, for the estimate, usage and the prefix cache
        chars = pieces_chars(pieces)
        est = chars // 4 + int(body.get("max_tokens") or 0)
        wait, limit_headers = st.admit(est)
        if wait:
            entry.update(status=429, fault="rate_limit")
            st.record(entry)
            self._send(429, {"error": {"message": "rate limited (stand-in)", "type": "rate_limit"}},
                       headers={**limit_headers, "Retry-After": f"{wait:.3f}", "retry-after-ms": str(math.ceil(wait * 1000))})
            return
        fault = "500" if body.get("model") == "standin-always-500" else st.decide(key)
        if fault is None and "html" in st.modes:
            fault = "garbage"
        if fault is None and body.get("stream"):
            fault = stream_fault(st.modes)
        if fault in STREAM_FAULTS and not body.get("stream"):
            fault = "close"  # a reply asked for whole, cut: the connection closes before its end
        entry["fault"] = fault
        if fault:
            with st.lock:
                st.counts[f"fault:{fault}"] += 1
        resp: dict | None = None
        if fault is None or (fault in STREAM_FAULTS and body.get("stream")):  # made inside the latency window
            resp, with_usage = completion(body, st.oracle.verdict if st.oracle is not None else None, key=key, prompt_chars=chars)
            usage = resp["usage"]
            usage["prompt_tokens_details"] = {"cached_tokens": st.cached_tokens(body, pieces)}
            if not with_usage:
                resp.pop("usage")
            latency = st.latency_s(usage["prompt_tokens"], usage["completion_tokens"])
        else:
            latency = st.latency_s(0, 0)
        if resp is not None and body.get("stream"):
            write_stream(self, resp, entry, key, arrived, latency, limit_headers, fault=fault,
                         usage="stream-no-usage" not in st.modes, cut_concurrent="cut-concurrent" in st.modes)
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
            self._send(200, None, raw=b"<html><body>upstream garbage (stand-in)</body></html>", content_type="text/html")
        elif fault == "close":  # a whole reply cut: its length announced, half of it sent, the connection closed
            entry.update(status=200)
            st.record(entry)
            self._leaving()
            self._head(200, None, length=100)
            self.wfile.write(b'{"id": "cut", "choices": [')
            self.close_connection = True
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
