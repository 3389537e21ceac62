"""The OpenAI-compatible wire format: request bodies, replies and streamed replies.

Replies are read as plain JSON, not into typed response models: providers add fields of their own
(``reasoning_content``, ``reasoning``, cache counters), and building typed models for every reply
costs CPU that, at many calls in flight, delays the replies queued behind it.
"""
from __future__ import annotations

import json

from ..duel.protocol import split_reasoning
from .types import CallRequest

STANDIN_FINGERPRINT = "duel-standin-not-a-model"


class Garbage(Exception):
    """The endpoint answered 200 with something that is not a chat completion."""


class BrokenStream(Exception):
    """A streamed reply that ended (or whose connection closed) before its ``finish_reason``: a
    broken transfer, never a completed reply, whatever ``[DONE]`` said."""


def request_body(req: CallRequest, stream: bool = False) -> dict:
    """The ``/chat/completions`` JSON body. Messages, tools and sampling parameters are already in
    wire format and posted as they are. A re-sample (``sample_index`` > 0) carries ``seed`` so that it
    is a different request, not the same body bought again."""
    body: dict = {"model": req.model, "messages": req.messages, **req.params}
    if req.tools:
        body["tools"] = req.tools
    if req.sample_index and "seed" not in body:
        body["seed"] = req.sample_index
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _usage(usage) -> dict:
    if not isinstance(usage, dict):
        return {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "usage_missing": True}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    for variant in ("prompt_cache_hit_tokens", "cached_tokens", "cache_read_input_tokens"):  # DeepSeek, others
        if cached is None:
            cached = usage.get(variant)
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "cached_tokens": int(cached or 0), "usage_missing": False}


def estimate_usage(req: CallRequest, parsed: dict) -> dict:
    """Tokens of a reply that came without usage, estimated from the text (about 4 characters a
    token), and flagged ``usage_estimated``: its cost is never silently zero."""
    calls = json.dumps(parsed.get("tool_calls")) if parsed.get("tool_calls") else ""
    text = len(parsed.get("content") or "") + len(parsed.get("reasoning") or "") + len(calls)
    return {**parsed, "prompt_tokens": req.prompt_estimate, "completion_tokens": -(-text // 4),
            "cached_tokens": 0, "usage_estimated": True}


def _answer(content, separate) -> tuple[str, str | None]:
    if not isinstance(separate, str):
        separate = json.dumps(separate) if separate else ""
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    think, answer = split_reasoning(content if isinstance(content, str) else "")
    return answer, "\n\n".join(p for p in (separate, think) if p) or None


def _tool_calls(raw) -> list[dict] | None:
    if not raw:
        return None
    if not isinstance(raw, list):
        raise Garbage("tool_calls is not a list")
    out = []
    for tc in raw:
        fn = (tc or {}).get("function") or {}
        args = fn.get("arguments")
        out.append({"id": tc.get("id"), "type": "function",
                    "function": {"name": fn.get("name"), "arguments": args if isinstance(args, str) else json.dumps(args)}})
    return out


def _fields(message: dict, finish_reason, usage, data: dict) -> dict:
    answer, reasoning = _answer(message.get("content"), message.get("reasoning_content") or message.get("reasoning") or "")
    return {"content": answer, "reasoning": reasoning, "tool_calls": _tool_calls(message.get("tool_calls")),
            "finish_reason": finish_reason, **_usage(usage), "served_model": data.get("model"),
            "standin": data.get("system_fingerprint") == STANDIN_FINGERPRINT}


def parse_reply(data) -> dict:
    """The fields of one ``chat.completion`` reply (decoded JSON) that a row keeps."""
    if not isinstance(data, dict):
        raise Garbage("reply is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Garbage("reply has no choices")
    msg = choices[0].get("message")
    if not isinstance(msg, dict):
        raise Garbage("reply has no message")
    return _fields(msg, choices[0].get("finish_reason"), data.get("usage"), data)


class StreamedReply:
    """Accumulates the ``data:`` events of a streamed chat completion into the same fields as
    :func:`parse_reply`: text and reasoning deltas are joined, tool-call deltas merged by index."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict] = {}
        self.finish_reason = None
        self.usage = None
        self.meta: dict = {}
        self.done = False
        self.events = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        """Raw bytes of the stream as they arrive (lines may span reads)."""
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self.feed_line(line)

    def close(self) -> None:
        if self._tail.strip():
            self.feed_line(self._tail)
        self._tail = b""

    def feed_line(self, line: bytes | str) -> None:
        line = line.strip()
        if not (line.startswith(b"data:") if isinstance(line, bytes) else line.startswith("data:")):
            return  # comments (": keep-alive"), event names, blank separators
        payload = line[5:].strip()
        if payload in (b"[DONE]", "[DONE]"):
            self.done = True
            return
        try:
            chunk = json.loads(payload)  # bytes or text: UTF-8 either way
        except json.JSONDecodeError:
            raise Garbage("stream event is not JSON") from None
        if not isinstance(chunk, dict):
            raise Garbage("stream event is not an object")
        if isinstance(chunk.get("error"), dict):
            raise Garbage(f"stream error: {str(chunk['error'].get('message'))[:200]}")
        self.events += 1
        for k in ("model", "system_fingerprint"):
            if chunk.get(k):
                self.meta[k] = chunk[k]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"] if isinstance(delta["content"], str) else str(delta["content"]))
            r = delta.get("reasoning_content") or delta.get("reasoning")
            if r:
                self.reasoning.append(r if isinstance(r, str) else json.dumps(r))
            for tc in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(tc.get("index", len(self.calls))), {"id": None, "name": "", "args": []})
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                args = fn.get("arguments")
                if args:
                    slot["args"].append(args if isinstance(args, str) else json.dumps(args))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def result(self) -> dict:
        if self.finish_reason is None:
            raise BrokenStream(f"stream ended without a finish_reason ({'after' if self.done else 'without'} [DONE]; "
                               f"{self.events} events, {sum(map(len, self.content))} characters)")
        calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": "".join(c["args"])}}
                 for _, c in sorted(self.calls.items())]
        message = {"content": "".join(self.content), "reasoning_content": "".join(self.reasoning),
                   "tool_calls": calls or None}
        return _fields(message, self.finish_reason, self.usage, self.meta)
