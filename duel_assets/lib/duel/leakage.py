"""Leakage guard: does a challenger answer use what only the hidden patch could tell it?

An answer is a leak suspect when it names a file path, or an identifier introduced by the patch,
that appears in the hidden patch but nowhere in the visible history. The evidence is the list of
such tokens.
"""
from __future__ import annotations

import re

from ..sampling.pr_records import changed_files_from_patch

_IDENT_RE = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{3,}\b")
_COMMON = {
    "self", "this", "return", "import", "from", "class", "def", "func", "function", "const", "static", "public",
    "private", "string", "none", "null", "true", "false", "else", "elif", "while", "with", "package", "struct",
    "impl", "void", "diff", "index", "main", "test", "tests", "file", "path", "error", "value", "type", "data",
}


def patch_identifiers(patch: str) -> set[str]:
    """Identifiers on the patch's added/removed lines."""
    out: set[str] = set()
    for line in (patch or "").splitlines():
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        out.update(t for t in _IDENT_RE.findall(line[1:]) if t.lower() not in _COMMON)
    return out


def leak_evidence(answer: str, history_text: str, patch: str | None) -> list[str]:
    if not answer or not patch:
        return []
    evidence: list[str] = []
    for path in changed_files_from_patch(patch):
        base = path.rsplit("/", 1)[-1]
        if path in answer and path not in history_text and base not in history_text:
            evidence.append(path)
    answer_idents = set(_IDENT_RE.findall(answer))
    for ident in sorted(patch_identifiers(patch) & answer_idents):
        if ident not in history_text and not any(ident in e for e in evidence):
            evidence.append(ident)
    return evidence
