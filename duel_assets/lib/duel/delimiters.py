"""Our data delimiters stay ours: untrusted text cannot open or close them.

Prompts wrap data in tags (``<pr_record>``, ``<answer_A>``, ``<answer_B>``). Histories, a
trajectory's tools (names, descriptions, parameter schemas), PR records, model answers and a
judge's own failed reply are untrusted: every spelling of one of our tags inside them that a reader
would take for the tag is defused by replacing what opens it with ``[``: ``</answer_A>`` becomes
``[/answer_A>``, ``&LT;/pr_record&GT;`` becomes ``[/pr_record&GT;``. Nothing else changes, so
text without such a spelling stays byte for byte what it was (call identities and the providers'
prompt-cache prefixes do not move), and the result depends on the text alone.

What a reader takes for a tag is defined once, by :func:`reading`: each character is folded
(compatibility decomposition as in NFKC/NFKD, case folding, look-alikes such as single angle
quotes ``‹``, Cyrillic ``А`` or ``﹍`` mapped to the ASCII they imitate; invisible characters —
format characters like zero-width spaces and U+2063, combining marks, control characters —
dropped), then HTML character references (any case, with or without ``;``) and ``\\uXXXX`` /
``\\xXX`` escapes are decoded, and both steps repeat until nothing changes (``&amp;lt;`` and
``＆ｌｔ；`` read as ``<``). A tag is then ``<``, optional blanks, an optional ``/``, optional blanks
and one of our tag names. :func:`tags_as_read` counts them in a whole text; :func:`neutralise`
finds them from each character that could open one.
"""
from __future__ import annotations

import html
import html.entities
import re
import unicodedata
from functools import lru_cache
from typing import Any

DATA_TAGS = ("pr_record", "answer_A", "answer_B",
             # tags of earlier prompt layouts: still no business inside data
             "task_history", "reference_pr_record", "hidden_pr_record")
_NAMES = {t.casefold(): t for t in DATA_TAGS}

# look-alikes of the characters our tags are spelt with (after case folding; NFKD does the rest)
_LOOKALIKES = {
    "<": "\u2039\u00ab\u2329\u3008\u27e8\u02c2\u1438\u276e\u276c\u29fc\u2991\u300a\u227a\u22d6",
    "/": "\u2215\u2044\u29f8\u2571\u27cb\u3033\u2cc6",
    "_": "\u2017\u02cd\u2581\ufe4d\ufe4e\ufe4f\u23bd",
    "a": "\u0430\u0251\u03b1\u1d00\u237a", "b": "\u0432\u044c\u03b2\u0299\u13cf", "c": "\u0441\u03f2\u1d04\u217d",
    "d": "\u0501\u1d05\u217e", "e": "\u0435\u03b5\u1d07\u04bd\u212e", "h": "\u04bb\u0570\u043d\u029c",
    "i": "\u0456\u04cf\u03b9\u0131\u0269\u2170", "k": "\u043a\u03ba\u1d0b", "n": "\u0578\u03b7\u0274\u057c",
    "o": "\u043e\u03bf\u0585\u1d0f\u2134", "p": "\u0440\u03c1\u0584\u1d18\u2374", "r": "\u0433\u0280\u1d26",
    "s": "\u0455\ua731\u01bd", "t": "\u0442\u03c4\u1d1b", "u": "\u03c5\u057d\u1d1c", "w": "\u051d\u03c9\u1d21\u0461",
    "x": "\u0445\u03c7", "y": "\u0443\u03b3\u028f\u04af",
}
_LOOK = str.maketrans({c: ascii_ for ascii_, cs in _LOOKALIKES.items() for c in cs})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # letters that render as nothing
_LEGACY = sorted({k.lower() for k in html.entities.html5 if not k.endswith(";")}, key=len, reverse=True)
_REF = re.compile(r"&(?:#x[0-9a-f]+;?|#[0-9]+;?|([a-z][a-z0-9]{0,31});)|\\u[0-9a-f]{4}|\\x[0-9a-f]{2}|&(?:"
                  + "|".join(_LEGACY) + ")")
_TAG = re.compile(r"<\s*(/)?\s*(" + "|".join(sorted(_NAMES, key=len, reverse=True)) + ")")
# every character whose folding holds "<", "&" or "\\" (a test checks this against all of Unicode)
_LT_LIKE = "<" + _LOOKALIKES["<"] + "\u2280\u226e\ufe3d\ufe3f\ufe64\uff1c"
# where a tag may open: a "<" not followed by ASCII that rules it out, a reference or an escape (one
# character class first, then what may follow it, so that the scan runs at the regex engine's speed)
_LIKE = re.escape(_LT_LIKE[1:])
_CANDIDATE = re.compile(f"[<&\\\\\ufe60\uff06\ufe68\uff3c{_LIKE}]"
                        r"(?:(?<=<)(?:(?![!-~])|(?=[/&\\patrhPATRH]))|(?<=[&\ufe60\uff06])(?=[#a-zA-Z]|[^\x20-\x7e])"
                        r"|(?<=[\\\ufe68\uff3c])(?=[uxUX]|[^\x20-\x7e])" f"|(?<=[{_LIKE}]))")
_ASCII_FOLDED = re.compile(r"[A-Z\x00-\x08\x0e-\x1b\x7f]")  # the ASCII that folding changes
_MAX_ROUNDS = 8


def _invisible(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("Cf", "Mn", "Me") or (cat == "Cc" and not ch.isspace()) or ch in _FILLERS


@lru_cache(maxsize=1 << 16)
def _fold_char(c: str) -> str:
    s = unicodedata.normalize("NFKD", c.translate(_LOOK)).casefold()
    s = unicodedata.normalize("NFKD", s).translate(_LOOK)
    return "".join(ch for ch in s if not _invisible(ch))


Spans = list[tuple[int, int]]


def _fold(s: str, org: Spans) -> tuple[str, Spans]:
    if s.isascii() and not _ASCII_FOLDED.search(s):
        return s, org
    chars: list[str] = []
    out: Spans = []
    for c, o in zip(s, org):
        f = _fold_char(c)
        if f == c:
            chars.append(c)
            out.append(o)
        elif f:
            chars.append(f)
            out.extend([o] * len(f))
    return "".join(chars), out


def _ref_value(ref: str, named: str | None) -> tuple[str, int] | None:
    """(decoded text, characters of ``ref`` it stands for) for one match of ``_REF``."""
    if ref.startswith("\\"):
        return chr(int(ref[2:], 16)), len(ref)
    if ref.startswith("&#"):
        return html.unescape(ref), len(ref)
    if named is not None:
        if named + ";" in html.entities.html5:
            return html.entities.html5[named + ";"], len(ref)
        legacy = next((k for k in _LEGACY if named.startswith(k)), None)
        return (html.entities.html5[legacy], 1 + len(legacy)) if legacy else None
    return html.entities.html5[ref[1:]], len(ref)


def _decode(s: str, org: Spans) -> tuple[str, Spans, bool]:
    chars: list[str] = []
    out: Spans = []
    pos, changed = 0, False
    for m in _REF.finditer(s):
        got = _ref_value(m.group(), m.group(1))
        if got is None:
            continue
        value, used = got
        a = m.start()
        chars.append(s[pos:a])
        out.extend(org[pos:a])
        chars.append(value)
        out.extend([(org[a][0], org[a + used - 1][1])] * len(value))
        pos, changed = a + used, True
    if not changed:
        return s, org, False
    chars.append(s[pos:])
    out.extend(org[pos:])
    return "".join(chars), out, True


def reading(text: str) -> tuple[str, Spans]:
    """``text`` as a reader takes it (see the module docstring), and for each of its characters the
    span of ``text`` it was read from."""
    s, org = text, [(i, i + 1) for i in range(len(text))]
    for _ in range(_MAX_ROUNDS):
        s, org = _fold(s, org)
        s, org, changed = _decode(s, org)
        if not changed:
            break
    return s, org


def tags_as_read(text: str) -> list[str]:
    """The tags a reader would see in ``text``, in order, e.g. ``["<answer_A", "</answer_A"]``.
    Used to check that each real tag occurs exactly once in a request."""
    s, _ = reading(text)
    return ["<" + (m.group(1) or "") + _NAMES[m.group(2)] for m in _TAG.finditer(s)]


def _verdict(s: str) -> str:
    """``tag``, ``no`` or ``more`` (the read text so far could still become a tag) for the text read
    from one candidate opening character."""
    if not s.startswith("<"):
        return "no"
    rest = s[1:].lstrip()
    if rest.startswith("/"):
        rest = rest[1:].lstrip()
    if not rest:
        return "more"
    if any(rest.startswith(n) for n in _NAMES):
        return "tag"
    return "more" if any(n.startswith(rest) for n in _NAMES) else "no"


def _safe_cut(text: str, end: int) -> int:
    """The first position at or after ``end`` that no character reference or escape spans (a
    printable ASCII character that none is spelt with), or the end of the text."""
    while end < len(text) and not (text[end] < "\x7f" and text[end] not in "&#;\\" and not text[end].isalnum()
                                   and (text[end] >= " " or text[end].isspace())):
        end += 1
    return end


def _opener(text: str, p: int) -> tuple[int, int] | None:
    """The span that opens a tag starting at ``p``, or None."""
    width = 48
    while True:
        end = _safe_cut(text, min(len(text), p + width))
        s, org = reading(text[p:end])
        verdict = _verdict(s)
        if verdict == "more" and end < len(text):
            width *= 2
            continue
        if verdict != "tag" or org[0][0] != 0:
            return None
        return p + org[0][0], p + org[0][1]


@lru_cache(maxsize=4096)
def neutralise(text: str | None) -> str:
    """``text`` with every spelling of our tags defused (see the module docstring)."""
    if not text:
        return text or ""
    spans: list[tuple[int, int]] = []
    for m in _CANDIDATE.finditer(text):
        p = m.start()
        if spans and p < spans[-1][1]:
            continue
        span = _opener(text, p)
        if span is not None:
            spans.append(span)
    if not spans:
        return text
    parts, pos = [], 0
    for a, b in spans:
        parts.append(text[pos:a] + "[")
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


def neutralise_json(value: Any) -> Any:
    """A JSON value (a tool list, a tool call) with every string in it, keys included, neutralised;
    equal to ``value`` when nothing in it needed defusing."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, dict):
        return {neutralise(k) if isinstance(k, str) else k: neutralise_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [neutralise_json(v) for v in value]
    return value
