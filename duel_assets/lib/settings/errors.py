"""Validation errors as one line each: the TOML key path, what was given, what is allowed."""
from __future__ import annotations

import difflib
import json
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic_core import ErrorDetails

# keys whose shape is easier to show than to describe
HINTS = {
    "sources": 'an array of tables: [[sources]] format = "...", path = "..." (one [[sources]] per source)',
    "prices": 'a table of tables, e.g. [prices."gpt-4o-mini"] prompt = 0.15, completion = 0.60',
    "judges.token_limits": 'a table of positive integers, e.g. token_limits = { "some/judge" = 2048 }',
    "pr_records": 'a table [pr_records] path = "...", or [[pr_records]] tables each with path (and format)',
    "metric_weights": "a table of numbers >= 0 over correctness, grounding, progress, protocol, efficiency",
}
_BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")


def toml_value(v: Any, limit: int = 60) -> str:
    """A value written the way TOML writes it (shortened)."""
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
    elif isinstance(v, list):
        s = "[" + ", ".join(toml_value(x, limit) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{ " + ", ".join(f"{key_path([k])} = {toml_value(x, limit)}" for k, x in v.items()) + " }"
    else:
        s = str(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def key_path(loc: list) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.match(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def _unwrap(ann: Any) -> tuple[Any, list]:
    meta: list = []
    while True:
        if get_origin(ann) is Annotated:
            ann, *more = get_args(ann)
            for m in more:
                meta += list(getattr(m, "metadata", None) or [m])
        elif get_origin(ann) in (Union, types.UnionType) and type(None) in get_args(ann):
            ann = next(a for a in get_args(ann) if a is not type(None))
        else:
            return ann, meta


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def resolve(root: type[BaseModel], loc: list) -> tuple[Any, list, type[BaseModel] | None]:
    """The annotation (with its constraints) at ``loc``, and the model holding the last key."""
    ann, meta, holder = root, [], None
    for part in loc:
        ann, _ = _unwrap(ann)
        if _is_model(ann) and isinstance(part, str) and part in ann.model_fields:
            holder, f = ann, ann.model_fields[part]
            ann, meta = f.annotation, list(f.metadata)
        elif get_origin(ann) is list and isinstance(part, int):
            ann, meta = get_args(ann)[0], []
        elif get_origin(ann) is dict and isinstance(part, str):
            ann, meta = get_args(ann)[1], []
        else:
            return None, [], holder
    inner, more = _unwrap(ann)
    return inner, meta + more, holder


def _bounds(meta: list) -> str:
    words = []
    for m in meta:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if isinstance(m, getattr(at, attr.capitalize())):
                v = getattr(m, attr)
                words.append(f"{sign} {v if isinstance(v, int) else format(v, 'g')}")
    return " and ".join(words)


def describe(ann: Any, meta: list) -> str:
    """What a key accepts, in words."""
    ann, more = _unwrap(ann)
    meta = meta + more
    bounds = _bounds(meta)
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(toml_value(v) for v in get_args(ann))
    if ann is bool:
        return "true or false"
    if ann is int:
        return "an integer" + (f" {bounds}" if bounds else "")
    if ann is float:
        return "a number" + (f" {bounds}" if bounds else "")
    if ann is str:
        pattern = next((m.pattern for m in meta if getattr(m, "pattern", None)), None)
        if pattern and pattern != r"\S":
            return f"a string matching {pattern}"
        return "a non-empty string" if pattern else "a string"
    if get_origin(ann) is list:
        least = next((m.min_length for m in meta if isinstance(m, at.MinLen)), 0)
        size = f" (at least {least} item{'s' if least > 1 else ''})" if least else ""
        return f"a list{size}, each item {describe(get_args(ann)[0], [])}"
    if get_origin(ann) is dict:
        return f"a table whose values are each {describe(get_args(ann)[1], [])}"
    if _is_model(ann):
        return "a table with keys " + ", ".join(ann.model_fields)
    return str(ann)


def _shown(loc: list, spelling: dict[str, str], pr_form: str | None) -> list:
    """The path as the user wrote it: train_data's table names, [pr_records] as a table or an array."""
    loc = list(loc)
    if loc and loc[0] in spelling:
        loc[0] = spelling[loc[0]]
    if loc[:2] == ["pr_records", "specs"]:
        loc = ["pr_records"] + (loc[3:] if pr_form == "table" else loc[2:])
    return loc


def error_line(err: ErrorDetails, root: type[BaseModel], spelling: dict[str, str], pr_form: str | None) -> str:
    loc = [p for p in err["loc"] if p != "[key]"]
    kind, given = err["type"], err.get("input")
    if isinstance(given, str) and "://" in given:  # an address: its user info and query values are not repeated
        from .env import mask_url

        given = mask_url(given)
    shown = key_path(_shown(loc, spelling, pr_form))
    internal = key_path(loc)
    if kind == "extra_forbidden" or err["loc"][-1:] == ("[key]",):
        parent, _, _ = resolve(root, loc[:-1])
        if kind == "extra_forbidden":
            allowed = list(parent.model_fields) if _is_model(parent) else []
        else:  # a key of a table whose keys are a fixed set (metric names)
            allowed = [str(a) for a in get_args(get_args(parent)[0])] if get_origin(parent) is dict else []
        name = str(loc[-1])
        near = difflib.get_close_matches(name, allowed, n=1)
        hint = f' (did you mean "{near[0]}"?)' if near else ""
        if len(loc) == 2 and name in root.model_fields:
            hint = f" ({name} is a top-level key: put it before the first [table])"
        return f"{shown}: unknown key{hint}; allowed keys: {', '.join(allowed) or 'none'}"
    ann, meta, _ = resolve(root, loc)
    wanted = HINTS.get(internal) or (describe(ann, meta) if ann is not None else "")
    if kind in ("value_error", "assertion_error"):
        msg = re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
        return f"{shown}: got {toml_value(given)}; allowed: {msg}"
    if kind == "missing":
        return f"{shown}: missing; required: {wanted}"
    tip = ""
    if get_origin(ann) is list and isinstance(given, str):
        tip = f" (a string is not a list: write [{toml_value(given)}])"
    return f"{shown}: got {toml_value(given)}; allowed: {wanted or err['msg']}{tip}"
