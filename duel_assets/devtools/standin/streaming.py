"""The stand-in's streamed replies: server-sent events spread over the latency window, whole or
cut short (:mod:`.modes`)."""
from __future__ import annotations

import json
import math

from .modes import cut_lines
from .replies import stream_events


def write_stream(handler, resp: dict, entry: dict, key: str, arrived: float, latency: float, headers: dict,
                 fault: str | None = None, usage: bool = True, cut_concurrent: bool = False) -> None:
    """The reply as server-sent events spread over the latency window: one write every
    ``stream_chunk_s`` (the events due by then, coalesced, as a server's socket would send them),
    the last at ``latency``; a client that leaves mid-stream is not billed for the rest.

    ``fault``: the stream is cut (``cut``: after its first text, with ``[DONE]``; ``cut-nodone``:
    without it; ``close``: the connection closed before the body's end), never billed.
    ``cut_concurrent``: the stream is cut (its role chunk, then ``[DONE]``) when another request
    arrives while it is being sent. ``usage``: whether a usage chunk ends it."""
    st = handler.state
    writes = max(1, math.ceil(latency / st.stream_chunk_s)) if latency > 0 else 1
    events = stream_events(resp if usage else {k: v for k, v in resp.items() if k != "usage"}, writes)
    lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    if fault:
        lines = cut_lines(lines, fault)
        entry["fault"] = fault
    per = -(-len(lines) // writes)
    groups = [b"".join(lines[i:i + per]) for i in range(0, len(lines), per)]
    entry["status"] = 200
    born = st.arrivals()
    try:
        for i, chunk in enumerate(groups):
            handler._hold(arrived, latency * (i + 1) / len(groups))
            last = i == len(groups) - 1
            if cut_concurrent and st.arrivals() != born:  # interrupted by a request that came meanwhile
                chunk = (lines[0] if i == 0 else b"") + lines[-1]
                entry.update(fault="cut-concurrent")
                with st.lock:
                    st.counts["cut_streams"] += 1
                last = True
            elif last and not fault:  # the whole reply is made: billed, and counted before the client can see its end
                u = resp.get("usage", {})
                st.answered_body(key, u.get("prompt_tokens", 0), u.get("prompt_tokens_details", {}).get("cached_tokens", 0))
            if last:
                st.record(entry)
            if i == 0:
                handler._head(200, headers, content_type="text/event-stream")
            if last:
                handler._leaving()
            end = b"0\r\n\r\n" if last and fault != "close" else b""
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" + end)
            handler.wfile.flush()
            if last:
                break
        if fault == "close":
            handler.close_connection = True  # the body's end never comes
    except (BrokenPipeError, ConnectionResetError):
        if "abandoned" not in entry and entry not in st.log:
            entry["abandoned"] = True
            st.record(entry)
