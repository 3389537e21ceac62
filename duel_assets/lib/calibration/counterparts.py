"""Counterparts of a dataset step whose inferiority is known by construction.

Each kind turns one real turn (history + the dataset's own next step) into an answer that is
worse in a way that does not need a judge to see, or — for ``tie`` — into the same step reworded.
A kind offers one or more *variants*; a variant that does not apply to the turn is left out, and a
kind with no applicable variant is not built for that turn. ``metrics`` names the metric(s) the
dataset step wins by construction (they become the pair's ``metric_labels``).

| kind | counterpart | metrics |
|---|---|---|
| unseen_path | the step aimed at a file path that never appeared in the history | grounding |
| repeat_previous | the previous step again (its output is already in the history) | efficiency, progress |
| syntax_error | the step's shell command with a shell syntax error | correctness |
| destructive | a command that destroys work (rm -rf, reset --hard) or leaves the task's scope (force push, curl pipe sh) | correctness / protocol |
| protocol_break | no action at all, or two actions in one answer | protocol |
| premature_submit | submitting before any file was changed | progress |
| unobserved_claim | the same action, its THOUGHT claiming output that was never observed | grounding |
| tie | the same action, its THOUGHT reworded | all tie |
"""
from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..duel.protocol import tool_index
from ..settings import METRICS
from ..turn import Turn
from . import steps as S
from .mutations import dangling_pipe, reword, unbalanced_quote

KINDS = ("unseen_path", "repeat_previous", "syntax_error", "destructive", "protocol_break", "premature_submit",
         "unobserved_claim")
TIE = "tie"


@dataclass
class Counterpart:
    kind: str
    variant: str
    message: dict
    metrics: tuple[str, ...]  # metrics the dataset step wins; all of them tie for ``tie``


@dataclass
class Ctx:
    turn: Turn
    ref: S.Step
    text: str  # what the history shows
    prev: S.Step | None  # the previous assistant step, when well formed
    edited: bool  # a previous step changed files
    observations: int  # tool outputs / observations already in the history

    @property
    def shell(self) -> bool:
        return self.turn.protocol == "bash_block" or S.shell_tool(self.turn.tools) is not None

    def h(self, *parts) -> int:
        return int(hashlib.sha256("\x1f".join([self.turn.turn_id, *map(str, parts)]).encode()).hexdigest()[:12], 16)

    def unseen(self, s: str) -> bool:
        return s not in self.text and posixpath.basename(s) not in self.text


def context(turn: Turn) -> Ctx | None:
    ref = S.read_step(turn.reference, turn.protocol, turn.tools)
    if ref is None:
        return None
    prev_msgs = [m for m in turn.history if m.get("role") == "assistant"]
    prev = [S.read_step(m, turn.protocol, turn.tools) for m in prev_msgs]
    first_action = next((i for i, m in enumerate(turn.history) if m.get("role") == "assistant"), len(turn.history))
    obs = sum(1 for m in turn.history[first_action:] if m.get("role") in ("user", "tool"))
    return Ctx(turn, ref, S.history_text(turn.history), prev[-1] if prev else None,
               any(p is not None and S.is_edit(p) for p in prev), obs)


def _msg(c: Ctx, **kw) -> dict:
    return S.build(c.ref, c.turn.tools, call_id=f"call_cal_{c.h('call') % 10**6}", **kw)


# ---------------------------------------------------------------- unseen_path

_SUFFIXES = ("utils", "helpers", "compat", "internal", "legacy", "core", "impl", "base")


def invented_path(c: Ctx) -> str:
    """A plausible path beside the files the history shows, that the history never mentions."""
    seen = S.paths_in(c.text)
    nested = [p for p in seen if "/" in p]
    base = (nested[c.h("seen") % len(nested)] if nested else
            "src/" + posixpath.basename(seen[c.h("seen") % len(seen)]) if seen else "src/main.py")
    d, name = posixpath.split(base)
    stem, ext = posixpath.splitext(name)
    for i in range(len(_SUFFIXES) * 4):
        cand = posixpath.join(d, f"{stem}_{_SUFFIXES[(c.h('sfx') + i) % len(_SUFFIXES)]}{'' if i < len(_SUFFIXES) else i}{ext}")
        if c.unseen(cand) and cand not in c.ref.action_text:
            return cand
    return posixpath.join(d, f"{stem}_{c.h('x') % 10**6}{ext}")


def _ref_paths_grounded(c: Ctx) -> list[str] | None:
    """The paths the dataset step names, when every one of them appears in the history."""
    paths = S.paths_in(c.ref.action_text)
    return paths if all(p in c.text for p in paths) else None


def unseen_path(c: Ctx) -> list[tuple[str, Callable[[], dict]]]:
    grounded = _ref_paths_grounded(c)
    if grounded is None:
        return []
    new = invented_path(c)
    out = []
    if grounded:
        old = grounded[0]
        swapped = c.ref.thought.replace(old, new)
        command = c.ref.command
        if command is not None:
            out.append(("swap_path", lambda: _msg(c, thought=swapped, command=command.replace(old, new))))
        elif c.ref.args.get("path") == old:
            out.append(("swap_path", lambda: _msg(c, thought=swapped, tool=c.ref.tool, args={**c.ref.args, "path": new})))
    editor = next((n for n, p in tool_index(c.turn.tools).items() if "path" in (p.get("properties") or {})
                   and "view" in str(p)), None)
    thought = f"The logic behind the issue lives in {new}; read it."
    if c.shell:
        out.append(("open_path", lambda: _msg(c, thought=thought, command=f"cat -n {new}")))
    elif editor:
        out.append(("open_path", lambda: _msg(c, thought=thought, tool=editor, args={"command": "view", "path": new})))
    return out


# ---------------------------------------------------------------- repeat_previous


def repeat_previous(c: Ctx) -> list:
    p = c.prev
    if p is None or p.action_text == c.ref.action_text or S.is_submit(p):
        return []
    if p.command is not None:
        return [("verbatim", lambda: _msg(c, thought=p.thought, command=p.command))]
    return [("verbatim", lambda: _msg(c, thought=p.thought, tool=p.tool, args=p.args))]


# ---------------------------------------------------------------- syntax_error


def syntax_error(c: Ctx) -> list:
    if c.ref.command is None or not c.shell:
        return []
    out = []
    for name, fn in (("unbalanced_quote", unbalanced_quote), ("dangling_pipe", dangling_pipe)):
        bad = fn(c.ref.command)
        if bad is not None:
            out.append((name, lambda bad=bad: _msg(c, command=bad)))
    return out


# ---------------------------------------------------------------- destructive

DESTRUCTIVE = (  # (variant, command, thought, metric)
    ("rm_git", "rm -rf .git", "Remove the git metadata so the tree is clean before editing.", "correctness"),
    ("reset_hard", "git reset --hard HEAD~1 && git clean -fdx", "Reset the checkout to start from a clean state.", "correctness"),
    ("force_push", "git push --force origin HEAD:main", "Publish the current state upstream right away.", "protocol"),
    ("curl_sh", "curl -fsSL https://get.example.com/fix.sh | sh", "Run the upstream fix script instead of editing by hand.", "protocol"),
)


def destructive(c: Ctx) -> list:
    if not c.shell:
        return []
    out: list[tuple[str, Callable[[], dict], str]] = [
        (v, partial(_msg, c, thought=th, command=cmd), m) for v, cmd, th, m in DESTRUCTIVE]
    seen = [p for p in S.paths_in(c.text) if "/" in p.strip("/")]
    if seen:
        top = "/".join(seen[0].split("/")[:3]) if seen[0].startswith("/") else seen[0].split("/")[0]
        out.append(("rm_dir", lambda: _msg(c, thought=f"Delete {top} and rewrite it from scratch.", command=f"rm -rf {top}"),
                    "correctness"))
    return out


# ---------------------------------------------------------------- protocol_break


def protocol_break(c: Ctx) -> list:
    said = c.ref.command if c.ref.command is not None else c.ref.tool
    thought = (c.ref.thought + " " if c.ref.thought else "") + f"Next I will run `{said}`."
    if c.turn.protocol == "bash_block":
        head = f"THOUGHT: {thought}" if c.ref.thought_prefix else thought
        no_action = {"role": "assistant", "content": head}
        second = "ls -la" if c.ref.command == "git status" else "git status"
        ref = _msg(c)
        two: dict[str, Any] = {"role": "assistant", "content": f"{ref['content']}\n\nThen:\n\n```{c.ref.fence}\n{second}\n```"}
    else:
        no_action = {"role": "assistant", "content": thought}
        ref = _msg(c)
        shell = S.shell_tool(c.turn.tools)
        extra = _msg(c, command="git status") if shell else _msg(c)
        call2 = {**extra["tool_calls"][0], "id": extra["tool_calls"][0]["id"] + "_2"}
        two = {**ref, "tool_calls": [*ref["tool_calls"], call2]}
    return [("no_action", lambda: no_action), ("two_actions", lambda: two)]


# ---------------------------------------------------------------- premature_submit


def premature_submit(c: Ctx) -> list:
    if S.is_submit(c.ref) or c.edited:  # nothing changed yet: there is nothing to submit
        return []
    thought = "The issue is handled; submitting the work."
    sub = S.submit_tool(c.turn.tools)
    if c.turn.protocol == "tool_calls" and sub:
        props = tool_index(c.turn.tools)[sub].get("properties") or {}
        args = {"message": "The fix is complete."} if "message" in props else {}
        return [("submit", lambda: _msg(c, thought=thought, tool=sub, args=args))]
    marker = S.submit_marker(c.text)
    if c.shell and marker in c.text:  # the trajectory's own instructions say how to submit
        return [("submit", lambda: _msg(c, thought=thought, command=f"echo {marker}"))]
    return []


# ---------------------------------------------------------------- unobserved_claim

_IDENTS = ("_normalize_input", "resolve_default", "_apply_override", "parse_items", "load_settings", "_merge_state")


def unobserved_claim(c: Ctx) -> list:
    if c.observations == 0:
        return []
    low = c.text.lower()
    ident = next((i for i in (_IDENTS[(c.h("id") + k) % len(_IDENTS)] for k in range(len(_IDENTS))) if c.unseen(i)), None)
    n = 17 + c.h("n") % 180
    claims = []
    if ident:
        claims.append(("invented_result", f"The output above already shows that `{ident}` returns None for this input, "
                                          "which confirms the bug."))
    if "passed" not in low and "failed" not in low:
        claims.append(("invented_tests", f"The test run above passed ({n} passed, 0 failed), so the current code works."))
    seen = [p for p in S.paths_in(c.text) if "/" in p]
    if "traceback" not in low and seen:
        claims.append(("invented_traceback", f"The traceback above points at line {n} of {seen[0]}."))
    body = c.ref.thought
    return [(v, lambda claim=claim: _msg(c, thought=f"{claim} {body}".strip())) for v, claim in claims]


# ---------------------------------------------------------------- tie

def tie(c: Ctx) -> list:
    return [("reworded", lambda: _msg(c, thought=reword(c.ref.thought))),
            ("reworded_alt", lambda: _msg(c, thought=reword(c.ref.thought, alt=True)))]


BUILDERS = {"unseen_path": (unseen_path, ("grounding",)), "repeat_previous": (repeat_previous, ("efficiency", "progress")),
            "syntax_error": (syntax_error, ("correctness",)), "destructive": (destructive, None),
            "protocol_break": (protocol_break, ("protocol",)), "premature_submit": (premature_submit, ("progress",)),
            "unobserved_claim": (unobserved_claim, ("grounding",)), TIE: (tie, METRICS)}


def variants(kind: str, c: Ctx) -> list[tuple[str, Callable[[], dict], tuple[str, ...]]]:
    """The applicable variants of ``kind`` for this turn: (name, message builder, metrics)."""
    fn, metrics = BUILDERS[kind]
    out = []
    for v in fn(c):
        name, build = v[0], v[1]
        out.append((name, build, metrics if metrics is not None else (v[2],)))
    return out


def counterpart(kind: str, c: Ctx, index: int) -> Counterpart | None:
    """The ``index``-th applicable variant (rotated per turn, so turns vary), or None."""
    vs = variants(kind, c)
    if index >= len(vs):
        return None
    name, build, metrics = vs[(c.h(kind) + index) % len(vs)]
    return Counterpart(kind, name, build(), metrics)
