"""What an endpoint refuses, learnt from its refusals, and the request bodies that avoid it.

A refusal (HTTP 400 or 422, or a 500 whose body is a validation error) that names one of the
request's switches is answered by asking again with that switch one step down:

* ``stream`` -> off: the reply is asked for whole;
* ``stream_options`` -> off: no usage chunk asked for (usage is then estimated);
* ``response_format``: ``json_schema`` -> ``json_object`` with the schema beside it -> off (not off
  when the schema is ``strict``: :func:`format_required`);
* ``tool_choice`` -> off; ``tools`` -> off (``tool_choice`` with it);
* ``seed`` -> off.

``stream`` and ``stream_options`` shape only the transfer, so a call's identity stays the same;
the others shape the reply, so a call sent with one of them turned down has an identity of its own
(:meth:`Downgrades.content_key`). What is learnt is kept per endpoint and model in the call store.
An endpoint that cuts streams while several are in flight gets a lower concurrency, for all its
models (:data:`ANY_MODEL`), learnt the same way.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .errors import json_body, provider_message

SWITCHES = ("stream_options", "response_format", "tool_choice", "tools", "seed", "stream")  # most specific first
CONTENT = frozenset({"response_format", "tool_choice", "tools", "seed"})  # part of a call's identity
ANY_MODEL = "*"  # the endpoint as a whole (its concurrency)
CONCURRENCY = "concurrency"
OFF = "off"
_ALIASES = {"include_usage": "stream_options", "json_schema": "response_format", "functions": "tools",
            "function_call": "tool_choice", "parallel_tool_calls": "tool_choice",
            "tool choice": "tool_choice"}  # vLLM: '"auto" tool choice requires --enable-auto-tool-choice ...'
_WORDS = re.compile(r"\b(" + "|".join(sorted({*SWITCHES, *_ALIASES}, key=len, reverse=True)) + r")\b")
# a pydantic error repeated in a message: 'loc': ('body', 'response_format', 'type')
_LOC = re.compile(r"""['"]loc['"]\s*:\s*[(\[]\s*['"]body['"]\s*,\s*['"](\w+)['"]""")


def _switch(name: str) -> str | None:
    name = re.split(r"[.\[]", name.strip(), maxsplit=1)[0]
    name = _ALIASES.get(name, name)
    return name if name in SWITCHES else None


def is_refusal(status: int, text: str) -> bool:
    """A status that refuses the request as sent: 400, 422, or a 500 whose body is a validation error."""
    return status in (400, 422) or (status == 500 and "validation error" in text.lower())


def named_switches(text: str) -> list[str]:
    """The switches an error body names: its ``error.param``, a validation error's ``loc``, else
    the words of its message; in the order found, without repeats."""
    names: list[str] = []
    data = json_body(text)
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("param"), str):
            names.append(err["param"])
        details = data.get("detail")
        for d in details if isinstance(details, list) else []:
            loc = d.get("loc") if isinstance(d, dict) else None
            if isinstance(loc, list) and len(loc) > 1 and loc[0] == "body" and isinstance(loc[1], str):
                names.append(loc[1])
    names += _LOC.findall(text)
    found = [s for s in map(_switch, names) if s]
    if not found:
        found = [s for s in map(_switch, _WORDS.findall(provider_message(text))) if s]
    return list(dict.fromkeys(found))


def uses(body: dict, switch: str) -> bool:
    return bool(body.get("stream")) if switch == "stream" else switch in body


def next_value(switch: str, body: dict) -> str:
    """The switch's value one step down from what ``body`` sent."""
    if switch == "response_format":
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            return "json_object"
    return OFF


def format_required(params: dict) -> bool:
    """Whether a request's ``response_format`` may not be turned off: a ``json_schema`` marked
    ``strict`` (structured output required) goes down to ``json_object`` with its schema, no further."""
    rf = params.get("response_format")
    js = rf.get("json_schema") if isinstance(rf, dict) else None
    return isinstance(js, dict) and js.get("strict") is True


def for_request(switches: dict[str, str], params: dict) -> dict[str, str]:
    """The downgrades a request goes with: those learnt for its model, a required response format
    kept at ``json_object`` (:func:`format_required`)."""
    if switches.get("response_format") == OFF and format_required(params):
        return {**switches, "response_format": "json_object"}  # as low as a required format goes
    return dict(switches)


def reply_format(body: dict) -> str | None:
    """The structured-output mode a body as sent asks for (``json_schema``, ``json_object``), or None."""
    rf = body.get("response_format")
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if kind in ("json_schema", "json_object") else None


def refused_switch(status: int, text: str, body: dict) -> str | None:
    """The switch to turn down after this answer to ``body``: the first one the refusal names that
    the body used; None when it is no refusal of a switch."""
    if not is_refusal(status, text):
        return None
    return next((s for s in named_switches(text) if uses(body, s)), None)


def _json_object(rf: dict) -> dict:
    schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
    return {"type": "json_object", **({"schema": schema} if schema is not None else {})}


def apply(body: dict, switches: dict[str, str]) -> list[str]:
    """Turn ``body``'s switches down as ``switches`` says, in place; the content-shaping changes
    made (``"tools=off"``, ...), which make the call one of its own."""
    changed: list[str] = []
    if not switches:
        return changed
    if switches.get("stream") == OFF:
        body.pop("stream", None)
        body.pop("stream_options", None)
    if switches.get("stream_options") == OFF:
        body.pop("stream_options", None)
    level, rf = switches.get("response_format"), body.get("response_format")
    if level and isinstance(rf, dict):
        if level == OFF:
            del body["response_format"]
            changed.append("response_format=off")
        elif level == "json_object" and rf.get("type") == "json_schema":
            body["response_format"] = _json_object(rf)
            changed.append("response_format=json_object")
    if switches.get("tools") == OFF and "tools" in body:
        body.pop("tools")
        body.pop("parallel_tool_calls", None)
        changed.append("tools=off")
    if (switches.get("tools") == OFF or switches.get("tool_choice") == OFF) and "tool_choice" in body:
        body.pop("tool_choice")
        changed.append("tool_choice=off")
    if switches.get("seed") == OFF and "seed" in body:
        del body["seed"]
        changed.append("seed=off")
    return changed


def identity_key(content_key: str, changed: list[str]) -> str:
    """The content key of a call sent with ``changed`` (from :func:`apply`): the request's own key
    when nothing that shapes the reply was turned down."""
    if not changed:
        return content_key
    return hashlib.sha256(f"{content_key}\n{';'.join(sorted(changed))}".encode()).hexdigest()


def lowered_concurrency(current: int, in_flight: int) -> int | None:
    """The concurrency after a stream was cut while ``in_flight`` requests (the cut one included)
    were in flight: half of them; None when it was alone (a broken transfer, not a crowd) or the
    bound is already that low."""
    if in_flight <= 1:
        return None
    lowered = max(1, in_flight // 2)
    return lowered if lowered < current else None


@dataclass
class Downgrades:
    """What one endpoint refuses, per model (``{model: {switch: value}}``) and its learnt concurrency."""
    by_model: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, str]]) -> Downgrades:
        out = cls()
        for model, switch, value in rows:
            out.by_model.setdefault(model, {})[switch] = value
        return out

    def of(self, model: str) -> dict[str, str]:
        return self.by_model.get(model, {})

    def set(self, model: str, switch: str, value: str | None) -> None:
        """Record (or, with None, forget) one switch's value for ``model``."""
        mine = self.by_model.setdefault(model, {})
        if value is None:
            mine.pop(switch, None)
        else:
            mine[switch] = value

    def update(self, other: Downgrades) -> None:
        """Take in what ``other`` knows (the store, as read again): each switch ends as the further
        down of the two."""
        for model, switches in other.by_model.items():
            for switch, value in switches.items():
                if further(switch, self.of(model).get(switch), value):
                    self.set(model, switch, value)

    @property
    def concurrency(self) -> int | None:
        raw = self.of(ANY_MODEL).get(CONCURRENCY)
        return int(raw) if raw else None

    def content_key(self, model: str, content_key: str, body: dict) -> str:
        """The content key a request with ``body`` (as built, before :func:`apply`) is sent under now."""
        return identity_key(content_key, apply(dict(body), self.of(model)))

    def in_effect(self, models) -> dict[str, dict[str, str]]:
        """The downgrades that apply to ``models`` (and the endpoint's own), for a step's metadata."""
        return {m: dict(v) for m, v in self.by_model.items() if v and (m in models or m == ANY_MODEL)}


def further(switch: str, old: str | None, new: str) -> bool:
    """Whether ``new`` turns ``switch`` further down than ``old``: a store never takes a downgrade back."""
    if old is None:
        return True
    if switch == CONCURRENCY:
        return int(new) < int(old)
    order = ("json_object", OFF) if switch == "response_format" else (OFF,)
    return new in order and (old not in order or order.index(new) > order.index(old))
