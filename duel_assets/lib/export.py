"""Export files, per-partition summaries and report.md. No Dagster imports."""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from .locks import file_lock
from .sampling import write_json_atomic
from .scoring import Gate, gate
from .settings import BUCKETS, METRICS, GateConfig, Paths

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


def write_summary(paths: Paths, prompt_file: str, summary: dict) -> None:
    write_json_atomic(summary_path(paths, prompt_file), summary)


def read_summaries(paths: Paths, keys: list[str] | None) -> dict[str, dict]:
    d = paths.report_dir / "partitions"
    out = {}
    if not d.exists():
        return out
    for f in sorted(d.glob("*.json")):
        key = f.stem
        if keys is not None and key not in keys:
            continue
        try:
            out[key] = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            continue
    return out


def overall_gate(summaries: dict[str, dict], cfg: GateConfig) -> Gate:
    scores = [t.get("score") for s in summaries.values() for t in s.get("turns", [])]
    return gate(scores, cfg)


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


def render_report(summaries: dict[str, dict], overall: Gate, mode: int, generated_at: str | None = None) -> str:
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    turns = [(k, t) for k, s in summaries.items() for t in s.get("turns", [])]
    counts = {b: sum(1 for _, t in turns if t.get("bucket") == b) for b in BUCKETS}
    parsed = sum(1 for _, t in turns if t.get("score") is not None)
    lines = [
        "# duel_assets report",
        "",
        f"Generated {generated_at}. Mode {mode} ({'challenger vs king' if mode == 2 else 'challenger vs reference turn'}).",
        "",
        "| partitions | turns | parsed | parse-fail | final | refined | defeat |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(summaries)} | {len(turns)} | {parsed} | {len(turns) - parsed} | {counts['final']} | {counts['refined']} | {counts['defeat']} |",
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
    for k, t in turns:
        f = t.get("path")
        rel = os.path.relpath(f, start=Path(f).parents[1]) if f else "-"
        lines.append(f"| {k} | {t['turn_id']} | {_fmt(t.get('score'))} | {t.get('bucket') or 'parse-fail'} | {rel} | "
                     + " | ".join(_fmt(t.get('per_metric', {}).get(m), 2) for m in METRICS) + " |")
    lines.append("")
    return "\n".join(lines)


def write_report(paths: Paths, keys: list[str] | None, cfg: GateConfig, mode: int,
                 export_buckets: list[str] | None = None, require_gate: bool = True) -> tuple[Path, Gate, dict]:
    """report.md and the SFT export, rebuilt from every registered partition's summary."""
    with file_lock(paths.report_dir / ".report.lock"):
        summaries = read_summaries(paths, keys)
        g = overall_gate(summaries, cfg)
        text = render_report(summaries, g, mode)
        tmp = paths.report.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, paths.report)
        sft = write_sft_export(paths, summaries, g, export_buckets or ["final", "refined"], require_gate)
    return paths.report, g, sft


# ---------------------------------------------------------------- SFT export

SFT_COLUMNS = ["messages", "tools", "source", "protocol", "instance_id", "turn_id", "prompt_file", "bucket", "score"]


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


def _card(rows: list[dict], summaries: dict[str, dict], overall: Gate, included: list[str], excluded: dict[str, str],
          buckets: list[str]) -> str:
    from collections import Counter

    by_source = Counter(r["source"] for r in rows)
    by_bucket = Counter(r["bucket"] for r in rows)
    by_protocol = Counter(r["protocol"] for r in rows)
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
        f"{len(rows)} training turns: each row is a coding-agent history and, as the last assistant message, a",
        f"challenger answer that won its duel (buckets: {', '.join(buckets)}). Rows keep the source's own chat",
        "format: OpenAI messages with tool calls (and the `tools` schemas) for tool-calling scaffolds, the",
        "mini-swe-agent text protocol (THOUGHT + one bash block) for bash-block sources.",
        "",
        "Load: `datasets.load_dataset(\"<this folder>\")` (parquet under `data/`), or `jsonl/train.jsonl`.",
        "",
        "| source | turns |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(by_source.items())], "",
        "| bucket | turns |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(by_bucket.items())], "",
        "| protocol | turns |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(by_protocol.items())], "",
        "## Gate",
        "",
        *_gate_lines(g),
        "",
        *_gate_table(summaries, "in export", lambda k, _: "yes" if k in included else "no: " + excluded.get(k, "")),
    ]
    return "\n".join(lines) + "\n"


def write_sft_export(paths: Paths, summaries: dict[str, dict], overall: Gate, buckets: list[str], require_gate: bool) -> dict:
    import pandas as pd

    included, excluded, rows = [], {}, []
    for key, s in summaries.items():
        if require_gate and s["gate"]["verdict"] != "ACCEPT":
            excluded[key] = "gate REJECT"
            continue
        included.append(key)
        for b in buckets:
            for f in sorted(paths.bucket_dir(b).glob(f"{key}__*.json")):
                rows.append(sft_row(json.loads(f.read_text(encoding="utf-8"))))
    out = paths.export_dir
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "jsonl").mkdir(parents=True, exist_ok=True)
    with open(out / "jsonl" / "train.jsonl.tmp", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(out / "jsonl" / "train.jsonl.tmp", out / "jsonl" / "train.jsonl")
    df = pd.DataFrame(rows, columns=SFT_COLUMNS)
    df.to_parquet(out / "data" / "train.parquet.tmp", index=False)
    os.replace(out / "data" / "train.parquet.tmp", out / "data" / "train-00000-of-00001.parquet")
    (out / "README.md").write_text(_card(rows, summaries, overall, included, excluded, buckets), encoding="utf-8")
    return {"rows": len(rows), "partitions_included": included, "partitions_excluded": excluded}


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


def partition_summary(key: str, gate_result: Gate, verdict_rows: list[dict]) -> dict:
    """What the overall gate, the report and the SFT export need from one partition."""
    return {"prompt_file": key, "gate": gate_result.to_dict(),
            "turns": [{"turn_id": r["turn_id"], "score": r["score"], "bucket": r["bucket"],
                       "per_metric": {m: r[f"{m}_win"] for m in METRICS}} for r in verdict_rows]}


def attach_export_paths(paths: Paths, key: str, export_rows: list[dict]) -> None:
    """Record each turn's export file in the partition summary (for the report's file column)."""
    f = summary_path(paths, key)
    if not f.exists():
        return
    summary = json.loads(f.read_text(encoding="utf-8"))
    by_turn = {r["turn_id"]: r["path"] for r in export_rows}
    for t in summary["turns"]:
        t["path"] = by_turn.get(t["turn_id"])
    write_summary(paths, key, summary)
