"""The stand-in's endpoint modes: the refusals and broken transfers real servers show.

Set with ``StandinServer(modes=...)``, ``POST /_standin/modes {"modes": [...]}`` or
``duel-assets standin --mode M`` (repeatable):

* refusals of a request switch, in a real server's words:
  ``refuse-stream`` (400, OpenAI's words for a model that cannot stream, ``param: "stream"``),
  ``refuse-stream-options`` (400, "Unrecognized request argument supplied: stream_options"),
  ``refuse-json-schema`` (500, llama.cpp's validation error on ``response_format.type``; a
  ``json_object`` response format is accepted), ``refuse-response-format`` (400 for any response
  format), ``refuse-tools`` (422, a FastAPI validation error on ``body.tools``),
  ``refuse-tool-choice`` (400, ``param: "tool_choice"``), ``refuse-seed`` (400, "Unrecognized
  request argument supplied: seed");
* transfers: ``stream-no-usage`` (streams end without a usage chunk, as llama.cpp's do),
  ``cut-with-done`` / ``cut-without-done`` (every stream ends after its first text, with or
  without ``[DONE]``, never with a ``finish_reason``), ``cut-concurrent`` (a stream in flight is
  cut, role chunk then ``[DONE]``, when another request arrives: llama-cpp-python's
  ``interrupt_requests``), ``close-mid-stream`` (the connection is closed mid-stream), ``html``
  (every chat request is answered 200 with an HTML page).

Scripted faults (``POST /_standin/script``) may also name ``cut``, ``cut-nodone`` and ``close``:
one stream cut with ``[DONE]``, without it, or by closing the connection.
"""
from __future__ import annotations

import json

STREAM_FAULTS = ("cut", "cut-nodone", "close")  # for one streamed reply, scripted
_MODE_FAULT = {"cut-with-done": "cut", "cut-without-done": "cut-nodone", "close-mid-stream": "close"}


def _openai(message: str, param: str | None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _llama_validation(loc: tuple, msg: str, given) -> dict:
    detail = {"type": "literal_error", "loc": loc, "msg": msg, "input": given}
    return {"error": {"message": f"1 validation error:\n  {detail}\n\n  POST /v1/chat/completions",
                      "type": "internal_server_error", "param": None, "code": None}}


def _rf_type(body: dict):
    rf = body.get("response_format")
    return rf.get("type") if isinstance(rf, dict) else None


# mode -> (does the body use what it refuses, status, the error body)
REFUSALS = {
    "refuse-stream": (lambda b: bool(b.get("stream")), 400, lambda b: _openai(
        "Unsupported value: 'stream' does not support true with this model. Only the default (false) value is "
        "supported.", "stream", "unsupported_value")),
    "refuse-stream-options": (lambda b: "stream_options" in b, 400, lambda b: _openai(
        "Unrecognized request argument supplied: stream_options", None)),
    "refuse-json-schema": (lambda b: _rf_type(b) == "json_schema", 500, lambda b: _llama_validation(
        ("body", "response_format", "type"), "Input should be 'text' or 'json_object'", _rf_type(b))),
    "refuse-response-format": (lambda b: "response_format" in b, 400, lambda b: _openai(
        "response_format is not supported with this model", "response_format")),
    "refuse-tools": (lambda b: "tools" in b, 422, lambda b: {"detail": [
        {"type": "extra_forbidden", "loc": ["body", "tools"], "msg": "Extra inputs are not permitted",
         "input": json.dumps(b["tools"])[:200]}]}),
    "refuse-tool-choice": (lambda b: "tool_choice" in b, 400, lambda b: _openai(
        "tool_choice is not supported by this deployment", "tool_choice")),
    "refuse-seed": (lambda b: "seed" in b, 400, lambda b: _openai("Unrecognized request argument supplied: seed", None)),
}
TRANSFER_MODES = ("stream-no-usage", "cut-with-done", "cut-without-done", "cut-concurrent", "close-mid-stream", "html")
MODES = (*REFUSALS, *TRANSFER_MODES)


def check_modes(modes) -> list[str]:
    """``modes`` as a list; a ValueError names the first one unknown."""
    out = [str(m) for m in modes]
    unknown = [m for m in out if m not in MODES]
    if unknown:
        raise ValueError(f"unknown stand-in mode {unknown[0]!r}: one of {', '.join(MODES)}")
    return out


def refusal(body: dict, modes, authorization: str | None = None) -> tuple[int, dict] | None:
    """(status, error body) when the stand-in refuses ``body``, else None: a refusal mode, or a
    quirk model (``standin-auth-echo`` echoes the key in its error, ``standin-refuses`` is not
    served, ``standin-refuses-naming-seed`` is not either but says "seed",
    ``standin-refuses-validation`` answers a 500 validation error about a message,
    ``standin-no-stream`` refuses to stream)."""
    model = body.get("model")
    if model == "standin-auth-echo":
        return 401, {"error": {"message": f"Incorrect API key provided: {authorization}"}}
    if model == "standin-refuses":
        return 400, _openai("this model is not served by this deployment (stand-in)", None)
    if model == "standin-refuses-naming-seed":  # a refusal that names a switch by chance
        return 400, _openai("the prompt is too long for this model, whatever its seed (stand-in)", None)
    if model == "standin-refuses-validation":  # a 500 validation error about no switch (llama.cpp's way)
        return 500, _llama_validation(("body", "messages", 0, "role"), "Input should be 'system', 'user' or 'assistant'",
                                      "robot")
    if model == "standin-no-stream" and body.get("stream"):
        return 400, _openai("stream=true is not supported by this deployment (stand-in)", None)
    for mode in modes:
        found = REFUSALS.get(mode)
        if found is not None and found[0](body):
            return found[1], found[2](body)
    return None


def stream_fault(modes) -> str | None:
    """The fault every streamed reply gets in these modes (one of :data:`STREAM_FAULTS`)."""
    return next((_MODE_FAULT[m] for m in modes if m in _MODE_FAULT), None)


def cut_lines(lines: list[bytes], fault: str) -> list[bytes]:
    """What a stream cut by ``fault`` carries of its ``data:`` lines (the last is ``[DONE]``): the
    role chunk and the first text, then ``[DONE]`` for a ``cut``; never the finish or the usage."""
    kept = lines[:2] if len(lines) > 3 else lines[:1]
    return kept + ([lines[-1]] if fault == "cut" else [])
