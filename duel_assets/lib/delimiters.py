"""Our data delimiters stay ours: untrusted text cannot open or close them. No Dagster imports.

Prompts wrap data in tags (``<pr_record>``, ``<answer_A>``, ``<answer_B>``). Histories, a
trajectory's own system prompt, PR records and model answers are untrusted: any spelling of one of
our tags inside them that a tokenizer or a model would read as the tag — inner whitespace, another
case, full-width forms (``＜／ａｎｓｗｅｒ＿Ａ＞``), HTML-escaped forms (``&lt;/answer_A&gt;``,
``&#60;``), zero-width characters inside the name — is rewritten so that it no longer opens with an
angle bracket: ``</answer_A>`` becomes ``[/answer_A>``. The text stays readable; the real tags each
occur once per request.
"""
from __future__ import annotations

import html
import re
import unicodedata

DATA_TAGS = ("pr_record", "answer_A", "answer_B",
             # tags of earlier prompt layouts: still no business inside data
             "task_history", "reference_pr_record", "hidden_pr_record")
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_GAP = rf"[\s{_ZERO_WIDTH}]*"
_OPEN = r"(?:<|\uff1c|\ufe64|&lt;?|&#0*60;?|&#[xX]0*3[cC];?)"
_SLASH = r"(?:/|\uff0f|\u2215|&#0*47;?|&#[xX]0*2[fF];?|&sol;?)"


def _full_width(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


def _char(c: str) -> str:
    if c.isalpha():
        forms = {c.lower(), c.upper(), _full_width(c.lower()), _full_width(c.upper())}
    else:
        forms = {c, _full_width(c)}
    return "[" + "".join(re.escape(f) for f in sorted(forms)) + "]"


def _name(tag: str) -> str:
    return f"[{_ZERO_WIDTH}]*".join(_char(c) for c in tag)


_TAG_RE = re.compile(
    f"{_OPEN}{_GAP}(?P<slash>{_SLASH})?{_GAP}(?P<name>"
    + "|".join(f"(?P<t{i}>{_name(t)})" for i, t in sorted(enumerate(DATA_TAGS), key=lambda it: -len(it[1])))
    + ")"
)


def _rewrite(m: re.Match) -> str:
    tag = next(DATA_TAGS[int(g[1:])] for g, v in m.groupdict().items() if g.startswith("t") and v)
    return "[" + ("/" if m.group("slash") else "") + tag


def neutralise(text: str | None) -> str:
    """``text`` with every spelling of our tags defused (see the module docstring)."""
    if not text:
        return text or ""
    return _TAG_RE.sub(_rewrite, text)


_READ_AS_TAG = re.compile(r"<\s*/?\s*(" + "|".join(DATA_TAGS) + r")", re.IGNORECASE)


def tags_as_read(text: str) -> list[str]:
    """The tags a reader would see in ``text`` after the usual normalisations (NFKC, HTML entities,
    zero-width characters dropped), in order, e.g. ``["<answer_A", "</answer_A"]``. Used to check
    that each real tag occurs exactly once in a request."""
    norm = html.unescape(unicodedata.normalize("NFKC", text))
    norm = re.sub(f"[{_ZERO_WIDTH}]", "", norm)
    canon = {t.lower(): t for t in DATA_TAGS}
    return ["<" + ("/" if "/" in m.group(0) else "") + canon[m.group(1).lower()] for m in _READ_AS_TAG.finditer(norm)]
