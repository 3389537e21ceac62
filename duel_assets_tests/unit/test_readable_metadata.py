"""Readable metadata entries become typed Dagster metadata values; a dict is refused."""
import pytest


def test_readable_entries_become_typed_values_and_a_dict_is_refused():
    from duel_assets.defs.metadata import metadata
    from duel_assets.lib import readable

    t = readable.counts({"defeat": 2, "final": 1, "parse-fail": 1}, "bucket", order=("final", "refined", "defeat"), share=True)
    assert [r["bucket"] for r in t.rows] == ["final", "defeat", "parse-fail"] and t.rows[1]["share"] == 0.5
    assert t.as_markdown().splitlines()[:2] == ["| bucket | turns | share |", "|---|---:|---:|"]
    md = metadata({"n": 3, "x": 0.5, "none": None, "ok": True, "line": "ACCEPT: fine", "t": t,
                   "h": readable.Markdown("| a |"), "u": readable.Link("http://h/p/k")})
    assert [type(v).__name__ for v in md.values()] == [
        "IntMetadataValue", "FloatMetadataValue", "NullMetadataValue", "BoolMetadataValue", "TextMetadataValue",
        "TableMetadataValue", "MarkdownMetadataValue", "UrlMetadataValue"]
    assert [c.name for c in md["t"].schema.columns] == ["bucket", "turns", "share"]
    for bad in ({"a": 1}, [1, 2]):
        with pytest.raises(TypeError, match="would be shown as JSON text"):
            metadata({"blob": bad})
    with pytest.raises(ValueError, match="column 'turns' \\(int\\)"):
        readable.table([("turns", "int")], [{"turns": "3"}])
    with pytest.raises(ValueError, match="not one of"):
        readable.table([("x", "json")], [])
