"""Metadata made for reading: one-line texts, numbers, typed tables, Markdown and links.

A readable entry is a plain value (``str``, ``int``, ``float``, ``bool`` or ``None``), a
:class:`Table`, :class:`Markdown` or :class:`Link`. The Dagster side (``defs/metadata.py``) turns
each into its own kind of metadata value (a number Dagster can plot, a table it shows as one) and
refuses a ``dict`` or ``list``, which would be shown as JSON text.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

COLUMN_TYPES = ("string", "int", "float", "bool")


@dataclass(frozen=True)
class Table:
    """Rows under typed columns; a cell is a plain value of its column's type, or None."""

    columns: tuple[tuple[str, str], ...]  # (name, one of COLUMN_TYPES)
    rows: tuple[dict[str, Any], ...]

    def __post_init__(self):
        names = [n for n, _ in self.columns]
        for n, t in self.columns:
            if t not in COLUMN_TYPES:
                raise ValueError(f"column {n!r}: type {t!r} is not one of {', '.join(COLUMN_TYPES)}")
        for r in self.rows:
            extra = set(r) - set(names)
            if extra:
                raise ValueError(f"row has cells outside the columns: {sorted(extra)}")
            for n, t in self.columns:
                if not _fits(r.get(n), t):
                    raise ValueError(f"column {n!r} ({t}): cell {r.get(n)!r} is not of that type")

    def as_markdown(self) -> str:
        head = "| " + " | ".join(n for n, _ in self.columns) + " |"
        rule = "|" + "|".join("---:" if t in ("int", "float") else "---" for _, t in self.columns) + "|"
        body = ["| " + " | ".join(_cell(r.get(n)) for n, _ in self.columns) + " |" for r in self.rows]
        return "\n".join([head, rule, *body]) if self.rows else "_none_"


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass(frozen=True)
class Link:
    url: str


def _fits(v: Any, t: str) -> bool:
    if v is None:
        return True
    if t == "bool":
        return isinstance(v, bool)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, str)


def _cell(v: Any) -> str:
    text = "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def table(columns: Iterable[tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> Table:
    cols = tuple(columns)
    names = [n for n, _ in cols]
    return Table(cols, tuple({n: r.get(n) for n in names} for r in rows))


def counts(values: Mapping[str, int], key: str, order: Iterable[str] = (), share: bool = False) -> Table:
    """A count per name (``order`` first, then the others by name), with each one's share of the total."""
    first = [k for k in order if k in values]
    keys = first + sorted(k for k in values if k not in first)
    total = sum(values.values())
    cols = [(key, "string"), ("turns", "int")] + ([("share", "float")] if share else [])
    return table(cols, ({key: k, "turns": int(values[k]),
                         "share": round(values[k] / total, 4) if total else None} for k in keys))


def is_readable(value: Any) -> bool:
    """A value the Dagster side can show as something other than JSON text."""
    return value is None or isinstance(value, (str, int, float, bool, Table, Markdown, Link))
