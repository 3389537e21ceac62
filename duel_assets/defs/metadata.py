"""Readable metadata (``duel_assets.lib.readable``) as Dagster metadata values: numbers stay numbers
(so the UI plots them across partitions and over time), tables become table values, Markdown and
links their own kinds. A ``dict`` or ``list`` is refused: Dagster would show it as JSON text."""
from __future__ import annotations

from typing import Any

import dagster as dg

from duel_assets.lib.readable import Link, Markdown, Table


def value(name: str, v: Any) -> dg.MetadataValue:
    if v is None:
        return dg.MetadataValue.null()
    if isinstance(v, bool):
        return dg.MetadataValue.bool(v)
    if isinstance(v, int):
        return dg.MetadataValue.int(v)
    if isinstance(v, float):
        return dg.MetadataValue.float(v)
    if isinstance(v, str):
        return dg.MetadataValue.text(v)
    if isinstance(v, Markdown):
        return dg.MetadataValue.md(v.text)
    if isinstance(v, Link):
        return dg.MetadataValue.url(v.url)
    if isinstance(v, Table):
        schema = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in v.columns])
        return dg.MetadataValue.table(records=[dg.TableRecord(r) for r in v.rows], schema=schema)
    raise TypeError(f"metadata entry {name!r}: a {type(v).__name__} would be shown as JSON text; give a number, "
                    "a line of text or a readable.Table")


def metadata(entries: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    return {name: value(name, v) for name, v in entries.items()}
