"""Export files, per-partition summaries and report.md. No Dagster imports."""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .locks import file_lock
from .files import read_json, replacing, write_json_atomic, write_text_atomic
from .scoring import Gate, bucket_counts, gate
from .settings import BUCKETS, METRICS, ChainConfig, GateConfig, Paths

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(s: str) -> str:
    return _SAFE.sub("_", s)[:180]


def export_path(paths: Paths, bucket: str, prompt_file: str, turn_id: str) -> Path:
    return paths.bucket_dir(bucket) / f"{prompt_file}__{safe_name(turn_id)}.json"


def clear_partition_exports(paths: Paths, prompt_file: str) -> int:
    n = 0
    for b in BUCKETS:
        d = paths.bucket_dir(b)
        if d.exists():
            for f in d.glob(f"{prompt_file}__*.json"):
                f.unlink()
                n += 1
    return n


def write_exports(paths: Paths, prompt_file: str, records: list[dict]) -> list[dict]:
    """``records`` carry 'turn_id', 'bucket', 'score' and the document to write; returns table rows."""
    paths.ensure()
    clear_partition_exports(paths, prompt_file)
    rows = []
    for rec in records:
        p = export_path(paths, rec["bucket"], prompt_file, rec["turn_id"])
        write_json_atomic(p, rec["document"])
        rows.append({"turn_id": rec["turn_id"], "bucket": rec["bucket"], "score": rec["score"], "path": str(p)})
    return rows


# ---------------------------------------------------------------- summaries and the report


def summary_path(paths: Paths, prompt_file: str) -> Path:
    return paths.report_dir / "partitions" / f"{prompt_file}.json"


def turns_path(paths: Paths, prompt_file: str) -> Path:
    return paths.report_dir / "partitions" / f"{prompt_file}.turns.json"


def write_summary(paths: Paths, prompt_file: str, summary: dict) -> None:
    write_json_atomic(summary_path(paths, prompt_file), summary)


def read_summary(paths: Paths, prompt_file: str) -> dict | None:
    return read_json(summary_path(paths, prompt_file))


def read_summaries(paths: Paths, keys: list[str] | None) -> dict[str, dict]:
    """The summaries of ``keys`` (every partition with one when None), in key order. Each is a small
    file (gate, scores, counts): the all-partitions figures cost one small read per partition."""
    if keys is None:
        d = paths.report_dir / "partitions"
        keys = [f.name[: -len(".json")] for f in d.glob("*.json") if not f.name.endswith(".turns.json")] if d.exists() else []
    out = {}
    for key in sorted(set(keys)):
        summary = read_summary(paths, key)
        if summary is not None:
            out[key] = summary
    return out


def read_turns(paths: Paths, prompt_file: str) -> list[dict]:
    return read_json(turns_path(paths, prompt_file), [])


def overall_gate(summaries: dict[str, dict], cfg: GateConfig) -> Gate:
    return gate([x for s in summaries.values() for x in s.get("scores", [])], cfg)


def _fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _gate_lines(g: dict) -> list[str]:
    lines = [
        f"- **Gate: {g['verdict']}**",
        f"- mean margin (score - 50): {_fmt(g['mean_margin'], 2)} (minimum {g['min_margin']})",
        f"- bootstrap {g['confidence']:.0%} lower bound: {_fmt(g['lower_bound'], 2)} (must be > 0; {g['resamples']} resamples)",
        f"- parsed fraction: {g['parsed_fraction']:.2f} ({g['parsed_turns']}/{g['turns']}; minimum {g['min_parsed_fraction']})",
    ]
    for r in g.get("reasons", []):
        lines.append(f"- reject reason: {r}")
    return lines


def _gate_table(summaries: dict[str, dict], last_header: str, last) -> list[str]:
    """Per-partition gate rows; ``last(key, gate)`` fills the final column."""
    lines = [f"| partition | verdict | turns | parsed | mean margin | lower bound | {last_header} |",
             "|---|---|---:|---:|---:|---:|---|"]
    for k, s in summaries.items():
        g = s["gate"]
        lines.append(f"| {k} | {g['verdict']} | {g['turns']} | {g['parsed_turns']} | {_fmt(g['mean_margin'], 2)} | "
                     f"{_fmt(g['lower_bound'], 2)} | {last(k, g)} |")
    return lines


REPORT_TURNS_MAX = 2000  # rows of report.md's turn table; the tables hold every turn


def render_report(summaries: dict[str, dict], overall: Gate, mode: int, turns_of=None,
                  generated_at: str | None = None, max_turns: int = REPORT_TURNS_MAX) -> str:
    """report.md. ``turns_of(key)`` gives a partition's turn detail; it is called only until the turn
    table is full, so the report costs the same at a million turns as at a thousand."""
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    counts = {b: sum(s.get("buckets", {}).get(b, 0) for s in summaries.values()) for b in BUCKETS}
    total = sum(len(s.get("scores", [])) for s in summaries.values())
    parsed = sum(1 for s in summaries.values() for x in s.get("scores", []) if x is not None)
    lines = [
        "# duel_assets report",
        "",
        f"Generated {generated_at}. Mode {mode} ({'challenger vs king' if mode == 2 else 'challenger vs reference turn'}).",
        "",
        "| partitions | turns | parsed | parse-fail | final | refined | defeat |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(summaries)} | {total} | {parsed} | {total - parsed} | {counts['final']} | {counts['refined']} | {counts['defeat']} |",
        "",
        "## Gate, all partitions",
        "",
        *_gate_lines(overall.to_dict()),
        "",
        "## Gate per partition",
        "",
        *_gate_table(summaries, "reason", lambda k, g: "; ".join(g.get("reasons", [])) or "-"),
    ]
    lines += ["", "## Turns", "",
              "| partition | turn | score | bucket | file | " + " | ".join(METRICS) + " |",
              "|---|---|---:|---|---|" + "---:|" * len(METRICS)]
    shown = 0
    for k in summaries:
        if shown >= max_turns or turns_of is None:
            break
        for t in turns_of(k)[: max_turns - shown]:
            f = t.get("path")
            rel = os.path.relpath(f, start=Path(f).parents[1]) if f else "-"
            lines.append(f"| {k} | {t['turn_id']} | {_fmt(t.get('score'))} | {t.get('bucket') or 'parse-fail'} | {rel} | "
                         + " | ".join(_fmt(t.get('per_metric', {}).get(m), 2) for m in METRICS) + " |")
            shown += 1
    if shown < total:
        lines += ["", f"{total - shown} more turns not listed (the table stops at {max_turns}): every turn is in "
                      "`duel.duel_verdict` and `duel.exported_buckets`."]
    lines.append("")
    return "\n".join(lines)


@dataclass
class Report:
    path: Path
    text: str
    overall: Gate
    sft: dict  # rows, partitions_included, partitions_excluded


def _report_lock(paths: Paths):
    return file_lock(paths.report_dir / ".report.lock")


def write_report(paths: Paths, keys: list[str] | None, cfg: GateConfig, mode: int,
                 export_buckets: list[str] | None = None, require_gate: bool = True) -> Report:
    """report.md and the SFT export's card, rebuilt from the registered partitions' summaries (small
    files); the SFT rows themselves are per-partition shards written by :func:`write_partition_sft`."""
    with _report_lock(paths):
        summaries = read_summaries(paths, keys)
        g = overall_gate(summaries, cfg)
        text = render_report(summaries, g, mode, turns_of=lambda k: read_turns(paths, k))
        write_text_atomic(paths.report, text)
        sft = write_sft_card(paths, summaries, g, export_buckets or ["final", "refined"], require_gate)
    return Report(paths.report, text, g, sft)


@dataclass
class PartitionExport:
    rows: list[dict]  # exported_buckets rows: turn, bucket, score, file
    sft: dict  # this partition's SFT rows and why it is left out, if it is
    report: Report


def export_partition(paths: Paths, key: str, records: list[dict], registered: list[str], cfg: ChainConfig,
                     mode: int) -> PartitionExport:
    """Everything ``exported_buckets`` writes for one partition: the per-turn files, the file column
    of its turn detail, its SFT shards, then report.md and the card over the registered partitions."""
    rows = write_exports(paths, key, records)
    attach_export_paths(paths, key, rows)
    sft = write_partition_sft(paths, key, records, cfg.export.buckets, cfg.export.require_gate)
    report = write_report(paths, registered, cfg.gate, mode, cfg.export.buckets, cfg.export.require_gate)
    return PartitionExport(rows, sft, report)


# ---------------------------------------------------------------- SFT export

def _sft_message(m: dict) -> dict:
    calls = m.get("tool_calls")
    if isinstance(calls, str):
        calls = json.loads(calls) if calls else None
    return {"role": m["role"], "content": m.get("content") or "",
            "tool_calls": [{"id": c.get("id") or f"call_{i}", "type": "function",
                            "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                           for i, c in enumerate(calls)] if calls else None,
            "tool_call_id": m.get("tool_call_id")}


def sft_row(doc: dict) -> dict:
    """A training row in the source's own chat format: the visible history, then the challenger's
    answer as the last assistant message (a tool call for tool scaffolds; THOUGHT plus one bash
    block for the mini-swe-agent text protocol)."""
    turn, chal = doc["turn"], doc["challenger"] or {}
    target = _sft_message({"role": "assistant", "content": chal.get("content"), "tool_calls": chal.get("tool_calls")})
    tools = turn.get("tools")
    return {
        "messages": [_sft_message(m) for m in turn["history"]] + [target],
        "tools": json.dumps(tools) if tools else None,
        "source": turn.get("source"), "protocol": turn.get("protocol"), "instance_id": turn.get("instance_id"),
        "turn_id": doc["turn_id"], "prompt_file": doc["prompt_file"], "bucket": doc["bucket"], "score": doc["score"],
    }


def _card(summaries: dict[str, dict], overall: Gate, included: list[str], excluded: dict[str, str],
          buckets: list[str]) -> str:
    by = {what: Counter() for what in ("source", "bucket", "protocol")}
    for k in included:
        for what, counter in by.items():
            counter.update(summaries[k]["sft"][f"by_{what}"])
    rows = sum(summaries[k]["sft"]["rows"] for k in included)
    g = overall.to_dict()
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/*.parquet",
        "---",
        "",
        "# duel_assets SFT export",
        "",
        f"{rows} training turns: each row is a coding-agent history and, as the last assistant message, a",
        f"challenger answer that won its duel (buckets: {', '.join(buckets)}). Rows keep the source's own chat",
        "format: OpenAI messages with tool calls (and the `tools` schemas) for tool-calling scaffolds, the",
        "mini-swe-agent text protocol (THOUGHT + one bash block) for bash-block sources.",
        "",
        "Load: `datasets.load_dataset(\"<this folder>\")` (one parquet shard per prompt file under `data/`), or",
        "the JSON Lines shards under `jsonl/`.",
        "",
        *[line for what in ("source", "bucket", "protocol")
          for line in (f"| {what} | turns |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(by[what].items())], "")],
        "## Gate",
        "",
        *_gate_lines(g),
        "",
        *_gate_table(summaries, "in export", lambda k, _: "yes" if k in included else "no: " + excluded.get(k, "")),
    ]
    return "\n".join(lines) + "\n"


def _sft_schema():
    """One schema for every shard, so that ``datasets`` reads them as one table even when a shard
    has no tool calls at all (pandas would type such a column as null)."""
    import pyarrow as pa

    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    message = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(call)),
                         ("tool_call_id", pa.string())])
    return pa.schema([("messages", pa.list_(message)), ("tools", pa.string()), ("source", pa.string()),
                      ("protocol", pa.string()), ("instance_id", pa.string()), ("turn_id", pa.string()),
                      ("prompt_file", pa.string()), ("bucket", pa.string()), ("score", pa.float64())])


_SHARD = re.compile(r"^train-(?P<key>.+)\.(?:parquet|jsonl)$")


def sft_shards(paths: Paths, prompt_file: str) -> tuple[Path, Path]:
    """(parquet, jsonl) shard of one partition's SFT rows."""
    out = paths.export_dir
    return out / "data" / f"train-{prompt_file}.parquet", out / "jsonl" / f"train-{prompt_file}.jsonl"


def write_partition_sft(paths: Paths, prompt_file: str, records: list[dict], buckets: list[str],
                        require_gate: bool) -> dict:
    """This partition's SFT rows as its own shards, from its own records: the cost of an export does
    not grow with the partitions before it. A partition whose gate says REJECT (when the gate is
    required) has no shards. Counts go to the partition summary for the card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _report_lock(paths):  # a card being rebuilt sees shards and summary agree
        summary = read_summary(paths, prompt_file) or {"prompt_file": prompt_file, "gate": {"verdict": "REJECT"}}
        parquet, jsonl = sft_shards(paths, prompt_file)
        excluded = _gated_out(summary, require_gate)
        rows = [] if excluded else [sft_row(r["document"]) for r in records if r["bucket"] in buckets]
        if excluded or not rows:  # no shard rather than an empty one (datasets cannot read those)
            for f in (parquet, jsonl):
                f.unlink(missing_ok=True)
        else:
            with replacing(parquet) as tmp:  # hidden from data/*.parquet until complete
                pq.write_table(pa.Table.from_pylist(rows, schema=_sft_schema()), tmp)
            write_text_atomic(jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        summary["sft"] = {"rows": len(rows), "excluded": excluded,
                          **{f"by_{w}": dict(Counter(r[w] for r in rows)) for w in ("source", "bucket", "protocol")}}
        write_summary(paths, prompt_file, summary)
        return summary["sft"]


def _gated_out(summary: dict, require_gate: bool) -> str | None:
    """Why a partition's rows stay out of the SFT export, or None."""
    return "gate REJECT" if require_gate and summary["gate"]["verdict"] != "ACCEPT" else None


def _prune_shards(paths: Paths, keep: set[str]) -> None:
    """Remove shards of partitions that are not in the export (no longer registered, or gated out
    since), and the single-file export of earlier versions (its rows are in the shards)."""
    for sub, legacy in (("data", "train-00000-of-00001.parquet"), ("jsonl", "train.jsonl")):
        d = paths.export_dir / sub
        if not d.exists():
            continue
        for f in d.iterdir():
            m = _SHARD.match(f.name)
            if f.name == legacy or (m and m["key"] not in keep):
                f.unlink(missing_ok=True)


def write_sft_card(paths: Paths, summaries: dict[str, dict], overall: Gate, buckets: list[str], require_gate: bool) -> dict:
    """The export's README (dataset card) from the partition summaries; shards of partitions that
    are not in the export are removed."""
    included, excluded = [], {}
    for key, s in summaries.items():
        sft = s.get("sft")
        if sft is None:
            excluded[key] = "not exported yet"
        elif sft["excluded"] or _gated_out(s, require_gate):
            excluded[key] = sft["excluded"] or _gated_out(s, require_gate)
        else:
            included.append(key)
    _prune_shards(paths, set(included) | {k for k, why in excluded.items() if why == "not exported yet"})
    write_text_atomic(paths.export_dir / "README.md", _card(summaries, overall, included, excluded, buckets))
    return {"rows": sum(summaries[k]["sft"]["rows"] for k in included), "partitions_included": included,
            "partitions_excluded": excluded}


LINEAGE_SQL = """SELECT s.turn_id, s.instance_id, s.source, k.action AS king_action, c.action AS challenger_action,
       c.leak_suspect, v.score, v.bucket, e.path
FROM duel.sampled_turns s
JOIN duel.king_answers k USING (prompt_file, turn_id)
JOIN duel.challenger_answers c USING (prompt_file, turn_id)
JOIN duel.duel_verdict v USING (prompt_file, turn_id)
LEFT JOIN duel.exported_buckets e USING (prompt_file, turn_id)
WHERE prompt_file = '{key}'  -- and turn_id = '...'; judge_scores has one row per judge and order"""


def lineage_markdown(key: str, rows: list[dict], limit: int = 20) -> str:
    """How to follow a turn across the seven tables, and where this partition's turns went."""
    lines = ["Every table is keyed by (prompt_file, turn_id). Follow a turn with:", "", "```sql",
             LINEAGE_SQL.format(key=key), "```", "", "| turn_id | score | bucket | file |", "|---|---:|---|---|"]
    for r in rows[:limit]:
        lines.append(f"| {r['turn_id']} | {_fmt(r.get('score'))} | {r.get('bucket')} | {r.get('path') or '-'} |")
    if len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more | | | |")
    return "\n".join(lines)


# ---------------------------------------------------------------- per-turn export documents


def export_records(turns_df, king_df, chal_df, judge_df, verdict_df, key) -> list[dict]:
    """One export document per parsed turn: the turn, both answers, score, breakdown, judge reasons."""
    turns = {r["turn_id"]: r for r in turns_df.to_dict("records")}
    kings = {r["turn_id"]: r for r in king_df.to_dict("records")}
    chals = {r["turn_id"]: r for r in chal_df.to_dict("records")}
    reasons: dict[str, list] = {}
    for r in judge_df.to_dict("records"):
        if r.get("parsed"):
            reasons.setdefault(r["turn_id"], []).append({"judge": r["judge"], "order": r["order"], "reason": r.get("reason")})
    out = []
    for v in verdict_df.to_dict("records"):
        if not v.get("parsed") or not v.get("bucket"):
            continue
        tid = v["turn_id"]
        t = turns.get(tid, {})

        def answer(a):
            if not a:
                return None
            return {k: _clean(a.get(k)) for k in ("model", "content", "reasoning", "tool_calls", "action", "format_ok",
                                                   "format_reason", "leak_suspect", "leak_evidence") if k in a}

        doc = {
            "prompt_file": key, "turn_id": tid, "bucket": v["bucket"], "bucket_note": _clean(v.get("bucket_note")),
            "score": v["score"], "opponent": v.get("opponent"),
            "per_metric": {m: _clean(v.get(f"{m}_win")) for m in METRICS},
            "per_judge": json.loads(v["per_judge"]) if v.get("per_judge") else {},
            "turn": {k: (json.loads(t[k]) if k in ("history", "reference", "tools") and isinstance(t.get(k), str) else _clean(t.get(k)))
                     for k in ("instance_id", "repo", "source", "protocol", "step", "history", "reference", "tools")},
            "king": answer(kings.get(tid)),
            "challenger": answer(chals.get(tid)),
            "judge_reasons": reasons.get(tid, []),
        }
        out.append({"turn_id": tid, "bucket": v["bucket"], "score": v["score"], "document": doc})
    return out


def _clean(v):
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def write_partition_summary(paths: Paths, key: str, gate_result: Gate, verdict_rows: list[dict]) -> dict:
    """What the overall gate, the report and the SFT export need from one partition: a small summary
    (gate, every score, bucket counts) read for every partition, and the per-turn detail, read only
    for the report's turn table."""

    summary = {"prompt_file": key, "gate": gate_result.to_dict(), "scores": [r["score"] for r in verdict_rows],
               "buckets": bucket_counts(verdict_rows)}
    earlier = read_summary(paths, key)
    if earlier and "sft" in earlier:  # the shards on disk stay described until exported_buckets replaces them
        summary["sft"] = earlier["sft"]
    write_json_atomic(turns_path(paths, key),
                      [{"turn_id": r["turn_id"], "score": r["score"], "bucket": r["bucket"],
                        "per_metric": {m: r[f"{m}_win"] for m in METRICS}} for r in verdict_rows])
    write_summary(paths, key, summary)
    return summary


def attach_export_paths(paths: Paths, key: str, export_rows: list[dict]) -> None:
    """Record each turn's export file in the partition's turn detail (the report's file column)."""
    turns = read_turns(paths, key)
    by_turn = {r["turn_id"]: r["path"] for r in export_rows}
    for t in turns:
        t["path"] = by_turn.get(t["turn_id"])
    write_json_atomic(turns_path(paths, key), turns)
