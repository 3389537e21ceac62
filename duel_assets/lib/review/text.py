"""Text shaped for the page: a patch as classed diff lines, leak evidence marked in an answer, long
text clipped and folded.

Nothing here produces markup: every function returns plain strings with a class or a flag, and the
page's templates escape each piece, so untrusted text can only ever be shown as text.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

SHOWN_CHARS = 100_000  # one message, answer or patch on the page; the rest is counted, not shown
FOLD_CHARS = 2_000  # longer observations are folded (their start shown, the rest one click away)
FOLD_LINES = 24
MIN_FOLDED = 400  # a fold hides at least this much (a few lines more are simply shown)


@dataclass(frozen=True)
class Clipped:
    """A text as shown: ``head`` always, ``rest`` behind a fold (empty when short), ``hidden`` characters not shown."""

    head: str
    rest: str = ""
    hidden: int = 0

    @property
    def folded(self) -> bool:
        return bool(self.rest)

    @property
    def total(self) -> int:
        return len(self.head) + len(self.rest) + self.hidden


def clip(text: str | None, fold: int | None = FOLD_CHARS, shown: int = SHOWN_CHARS, lines: int = FOLD_LINES) -> Clipped:
    """``text`` cut for the page: at most ``shown`` characters, folded after ``fold`` characters or
    ``lines`` lines (``fold`` None: never folded)."""
    text = text or ""
    hidden = max(0, len(text) - shown)
    text = text[:shown]
    if fold is None or (len(text) <= fold and text.count("\n") < lines):
        return Clipped(text, "", hidden)
    cut = min(fold, len(text))
    lines_cut = _nth(text, "\n", lines)
    if lines_cut is not None:
        cut = min(cut, lines_cut + 1)
    if len(text) - cut < MIN_FOLDED:
        return Clipped(text, "", hidden)
    return Clipped(text[:cut], text[cut:], hidden)


def _nth(text: str, ch: str, n: int) -> int | None:
    at = -1
    for _ in range(n):
        at = text.find(ch, at + 1)
        if at < 0:
            return None
    return at


# ---------------------------------------------------------------- diffs


def diff_class(line: str) -> str:
    if line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file mode", "deleted file mode",
                        "similarity index", "rename from", "rename to", "old mode", "new mode")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    if line.startswith("\\"):
        return "meta"
    return "ctx"


def diff_lines(patch: str | None, shown: int = SHOWN_CHARS) -> tuple[list[tuple[str, str]], int]:
    """``([(class, line), ...], characters not shown)``: classes ``file``, ``hunk``, ``add``, ``del``,
    ``meta`` and ``ctx``. A ``+++``/``---`` line inside a hunk is a changed line, not a file header."""
    text = patch or ""
    hidden = max(0, len(text) - shown)
    out: list[tuple[str, str]] = []
    in_hunk = False
    for line in text[:shown].splitlines():
        cls = diff_class(line)
        if in_hunk and cls == "file" and line.startswith(("--- ", "+++ ")):
            cls = "add" if line.startswith("+") else "del"
        if cls == "hunk":
            in_hunk = True
        elif line.startswith("diff --git"):
            in_hunk = False
        out.append((cls, line))
    return out, hidden


# ---------------------------------------------------------------- leak evidence


def marked(text: str | None, terms: list[str] | None) -> list[tuple[str, bool]]:
    """``text`` as ``(piece, is_evidence)`` pieces: every occurrence of a term (longest first) is its
    own piece flagged True."""
    text = text or ""
    terms = sorted({t for t in (terms or []) if isinstance(t, str) and t}, key=len, reverse=True)
    if not terms or not text:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in terms))
    out: list[tuple[str, bool]] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() > at:
            out.append((text[at:m.start()], False))
        out.append((m.group(0), True))
        at = m.end()
    if at < len(text):
        out.append((text[at:], False))
    return out


# ---------------------------------------------------------------- tool calls


def arguments_text(arguments) -> str:
    """A tool call's arguments for reading: JSON pretty-printed when it is JSON, else as given."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    try:
        return json.dumps(arguments, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(arguments)


def tool_calls(calls) -> list[dict]:
    """``[{"name", "arguments", "id"}]`` of an OpenAI ``tool_calls`` list (anything else is ignored)."""
    if isinstance(calls, str):
        try:
            calls = json.loads(calls)
        except ValueError:
            return []
    out = []
    for c in calls if isinstance(calls, list) else []:
        fn = c.get("function") if isinstance(c, dict) else None
        if isinstance(fn, dict):
            out.append({"name": str(fn.get("name") or ""), "arguments": arguments_text(fn.get("arguments")),
                        "id": str(c.get("id") or "")})
    return out
