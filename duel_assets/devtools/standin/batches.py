"""The stand-in's batch API: ``/v1/files`` and ``/v1/batches`` as OpenAI serves them, NOT a model.

* ``POST /v1/files`` (multipart, ``purpose=batch``) keeps a JSONL of requests; ``GET
  /v1/files/{id}/content`` returns a file (input, output or error);
* ``POST /v1/batches`` creates a batch over an uploaded file; ``GET /v1/batches/{id}`` retrieves it,
  ``GET /v1/batches`` lists them, ``POST /v1/batches/{id}/cancel`` cancels one still running;
* a batch is done ``delay_s`` after it was created (decided when it is next retrieved): each request
  is answered (its body paid, counted like an online answer), errored (``error_rate``, a 500 in the
  error file) or left expired (``expire_rate``, ``batch_expired`` in the error file; the batch's
  status is then ``expired``), decided by a hash of the body and how often a batch carried it;
* ``POST /_standin/batches`` sets ``delay_s``, ``error_rate`` and ``expire_rate``; the stats count
  batches created and the requests they carried.
"""
from __future__ import annotations

import json
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP

from .batch_state import BatchState
from .provider import body_key, message_pieces, pieces_chars
from .replies import completion, h


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _file(state: BatchState, data: bytes, purpose: str, filename: str) -> dict:
    obj: dict = {"id": _new_id("file"), "object": "file", "bytes": len(data), "created_at": int(time.time()),
           "filename": filename, "purpose": purpose, "status": "processed"}
    state.files[obj["id"]] = {**obj, "data": data}
    return obj


def _public(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str, bytes]]:
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    out: dict[str, tuple[str, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        out[str(name)] = (str(part.get_filename() or ""), payload if isinstance(payload, bytes) else b"")
    return out


def _finish(server_state, state: BatchState, b: dict) -> None:
    """Decide every request of a batch that is due: answered, errored or expired."""
    lines = [json.loads(x) for x in state.files[b["input_file_id"]]["data"].splitlines() if x.strip()]
    out, err, expired = [], [], 0
    for line in lines:
        body, cid = line.get("body") or {}, line.get("custom_id")
        key = body_key(body)
        with state.lock:
            n = state.seen[key]
            state.seen[key] += 1
        roll = (h(key, n, "batch") % 10_000) / 10_000
        if roll < state.error_rate:
            state.counts["errors"] += 1
            err.append({"id": _new_id("batch_req"), "custom_id": cid, "error": None,
                        "response": {"status_code": 500, "request_id": _new_id("req"),
                                     "body": {"error": {"message": "internal error (stand-in batch)", "type": "server_error"}}}})
        elif roll < state.error_rate + state.expire_rate:
            expired += 1
            state.counts["expired"] += 1
            err.append({"id": _new_id("batch_req"), "custom_id": cid, "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before the "
                                                                      "completion window expired (stand-in)."}})
        else:
            pieces = message_pieces(body)
            resp, _ = completion(body, None, key=key, prompt_chars=pieces_chars(pieces))
            resp["usage"]["prompt_tokens_details"] = {"cached_tokens": server_state.cached_tokens(body, pieces)}
            server_state.answered_body(key, resp["usage"]["prompt_tokens"], resp["usage"]["prompt_tokens_details"]["cached_tokens"])
            state.counts["answers"] += 1
            out.append({"id": _new_id("batch_req"), "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": _new_id("req"), "body": resp}})
    now = int(time.time())
    if out:
        b["output_file_id"] = _file(state, "".join(json.dumps(x) + "\n" for x in out).encode(), "batch_output", "output.jsonl")["id"]
    if err:
        b["error_file_id"] = _file(state, "".join(json.dumps(x) + "\n" for x in err).encode(), "batch_output", "errors.jsonl")["id"]
    b["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err) - expired}
    b["status"] = "expired" if expired else "completed"
    b["expired_at" if expired else "completed_at"] = now


def handle(handler, method: str) -> bool:
    """Serve a batch API path; False when ``handler.path`` is not one."""
    path = handler.path.split("?")[0].rstrip("/")
    for prefix in ("/v1", ""):
        if path.startswith(prefix + "/files") or path.startswith(prefix + "/batches"):
            path = path[len(prefix):]
            break
    else:
        if path != "/_standin/batches":
            return False
    state: BatchState = handler.server.state.batch
    parts = path.strip("/").split("/")
    n = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(n) if method == "POST" and n else b""
    if path == "/_standin/batches":
        cfg = json.loads(raw or b"{}")
        state.delay_s = float(cfg.get("delay_s", state.delay_s))
        state.error_rate = float(cfg.get("error_rate", state.error_rate))
        state.expire_rate = float(cfg.get("expire_rate", state.expire_rate))
        handler._send(200, {"delay_s": state.delay_s, "error_rate": state.error_rate, "expire_rate": state.expire_rate})
        return True
    if parts[0] == "files":
        if method == "POST" and len(parts) == 1:
            form = _multipart(handler.headers.get("Content-Type", ""), raw)
            name, data = form.get("file", ("", b""))
            with state.lock:
                obj = _file(state, data, form.get("purpose", ("", b"batch"))[1].decode(), name or "input.jsonl")
            handler._send(200, obj)
            return True
        f = state.files.get(parts[1]) if len(parts) > 1 else None
        if f is None:
            handler._send(404, {"error": {"message": f"no such file {'/'.join(parts[1:])}"}})
        elif len(parts) == 3 and parts[2] == "content":
            handler._send(200, None, raw=f["data"], content_type="application/jsonl")
        else:
            handler._send(200, {k: v for k, v in f.items() if k != "data"})
        return True
    # batches
    if method == "POST" and len(parts) == 1:
        req = json.loads(raw or b"{}")
        if req.get("input_file_id") not in state.files:
            handler._send(400, {"error": {"message": f"no such file {req.get('input_file_id')}"}})
            return True
        lines = [x for x in state.files[req["input_file_id"]]["data"].splitlines() if x.strip()]
        now = int(time.time())
        b = {"id": _new_id("batch"), "object": "batch", "endpoint": req.get("endpoint", "/v1/chat/completions"),
             "errors": None, "input_file_id": req["input_file_id"], "completion_window": req.get("completion_window", "24h"),
             "status": "in_progress", "output_file_id": None, "error_file_id": None, "created_at": now,
             "in_progress_at": now, "expires_at": now + 86_400, "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
             "metadata": req.get("metadata"), "_due": time.monotonic() + state.delay_s}
        with state.lock:
            state.batches[b["id"]] = b
            state.counts["batches"] += 1
            state.counts["requests"] += len(lines)
        handler._send(200, _public(b))
        return True
    if len(parts) == 1:  # the list, newest first
        with state.lock:
            listed = [_public(b) for b in sorted(state.batches.values(), key=lambda b: b["created_at"], reverse=True)]
        handler._send(200, {"object": "list", "data": listed, "has_more": False,
                            "first_id": listed[0]["id"] if listed else None, "last_id": listed[-1]["id"] if listed else None})
        return True
    found = state.batches.get(parts[1])
    if found is None:
        handler._send(404, {"error": {"message": f"no such batch {parts[1]}"}})
        return True
    b = found
    if method == "POST" and len(parts) == 3 and parts[2] == "cancel":
        if b["status"] == "in_progress":
            b.update(status="cancelled", cancelled_at=int(time.time()))
    else:
        with state.lock:
            due = b["status"] == "in_progress" and time.monotonic() >= b["_due"]
            if due:
                b["status"] = "finalizing"
        if due:
            _finish(handler.server.state, state, b)
    handler._send(200, _public(b))
    return True
