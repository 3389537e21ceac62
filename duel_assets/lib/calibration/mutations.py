"""Small text mutations that make a counterpart: shell syntax errors and rewordings."""
from __future__ import annotations

import re


def unbalanced_quote(command: str) -> str | None:
    """The command with the last occurrence of its first line's outer quote removed."""
    first, sep, rest = command.partition("\n")
    q = next((ch for ch in first if ch in "'\""), None)
    if q is None or first.count(q) % 2 or "\\" + q in first:
        return None
    i = first.rindex(q)
    return first[:i] + first[i + 1:] + sep + rest


def dangling_pipe(command: str) -> str | None:
    first, sep, rest = command.partition("\n")
    if first.rstrip().endswith(("\\", "|", "&&", "||")):
        return None
    return first.rstrip() + " |" + sep + rest


_REWORD = [(r"\bLet me\b", "I'll"), (r"\bI need to\b", "I have to"), (r"\bNow\b", "Next"), (r"\bLook at\b", "Inspect"),
           (r"\blook at\b", "inspect"), (r"\bLook for\b", "Search for"), (r"\blook for\b", "search for"),
           (r"\bCheck\b", "Verify"), (r"\bcheck\b", "verify"), (r"\bRead\b", "Open"), (r"\bunderstand\b", "see"),
           (r"\bConfirm\b", "Double-check"), (r"\bApply\b", "Make"), (r"\boverview of\b", "picture of"),
           (r"\bmight matter too\b", "may be relevant as well"), (r"\bis defined\b", "gets defined"),
           (r"\bFind\b", "Locate"), (r"\bfirst\b", "to begin with"), (r"\bsubmitting\b", "handing it in")]


def reword(thought: str, alt: bool = False) -> str:
    """The same THOUGHT in other words: phrase substitutions; ``alt`` also restates it as the next step."""
    if not thought.strip():
        return "Next step." if alt else "Continuing with the next step."
    out = thought
    for pat, rep in _REWORD:
        out = re.sub(pat, rep, out)
    if alt:
        return "Next step: " + out[:1].lower() + out[1:]
    return out if out != thought else "Next, " + out[:1].lower() + out[1:]
