"""report.md and the export's card over all partitions: ``duel_report``'s work."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..sampling.curation import records as curation_records
from ..settings import BUCKETS, METRICS, ChainConfig, GateConfig, Paths
from ..system.files import read_json, write_text_atomic
from ..system.locks import file_lock
from ..verdict.gate import Gate, gate
from ..verdict.verdicts import bucketing, merge_provenance, standin_note
from .card import write_card
from .markdown import bucketing_lines, fmt, gate_lines, gate_table, models_line
from .paths import export_lock_path, partition_files
from .summary import read_manifest, read_summaries, read_turns

REPORT_TURNS_MAX = 2000  # rows of report.md's turn table; the tables hold every turn


def overall_gate(summaries: dict[str, dict], cfg: GateConfig) -> Gate:
    """The gate over every partition's turns at once (read from the small summaries)."""
    excluded: dict[str, int] = {}
    for s in summaries.values():
        for reason, n in (s.get("excluded") or {}).items():
            excluded[reason] = excluded.get(reason, 0) + n
    return gate([x for s in summaries.values() for x in s.get("scores", [])], cfg, excluded=excluded)


def render_report(summaries: dict[str, dict], overall: Gate, mode: int, turns_of=None, files_of=None,
                  prov: dict | None = None, generated_at: str | None = None, max_turns: int = REPORT_TURNS_MAX,
                  home: Path | None = None, evidence: list[str] | None = None, bucketing: dict | None = None,
                  curation: list[str] | None = None) -> str:
    """report.md. ``turns_of(key)`` gives a partition's turn detail and ``files_of(key)`` its exported
    files; they are called only until the turn table is full, so the report costs the same at a
    million turns as at a thousand."""
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    prov = prov if prov is not None else merge_provenance([s.get("provenance") or {} for s in summaries.values()])
    counts = {b: sum(s.get("buckets", {}).get(b, 0) for s in summaries.values()) for b in BUCKETS}
    scored = sum(len(s.get("scores", [])) for s in summaries.values())
    parsed = sum(1 for s in summaries.values() for x in s.get("scores", []) if x is not None)
    excluded = sum(sum((s.get("excluded") or {}).values()) for s in summaries.values())
    note = standin_note(prov)
    lines = [
        "# duel_assets report", "",
        *([f"**{note}**", ""] if note else []),
        f"Generated {generated_at}. Mode {mode} ({'challenger vs king' if mode == 2 else 'challenger vs reference turn'}).",
        "", models_line(prov), "",
        "| partitions | turns | parsed | parse-fail | excluded | final | refined | defeat |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(summaries)} | {scored + excluded} | {parsed} | {scored - parsed} | {excluded} | {counts['final']} | "
        f"{counts['refined']} | {counts['defeat']} |",
        *(["", *bucketing_lines(summaries, bucketing)] if bucketing else []),
        "", "## Gate, all partitions", "", *gate_lines(overall.to_dict()),
        *(["", *evidence] if evidence else []),
        "", "## Gate per partition", "",
        *gate_table(summaries, "reason", lambda k, g: "; ".join(g.get("reasons", [])) or "-"),
        *(["", *curation] if curation else []),
        "", "## Turns", "",
        "| partition | turn | score | bucket | file | " + " | ".join(METRICS) + " |",
        "|---|---|---:|---|---|" + "---:|" * len(METRICS),
    ]
    shown = 0
    for k in summaries:
        if shown >= max_turns or turns_of is None:
            break
        files = (files_of(k) if files_of else None) or {}
        for t in turns_of(k)[: max_turns - shown]:
            f = files.get(t["turn_id"])
            rel = os.path.relpath(f, start=home) if f and home else (f or "-")
            bucket = f"excluded: {t['excluded_reason']}" if t.get("excluded_reason") else t.get("bucket") or "parse-fail"
            lines.append(f"| {k} | {t['turn_id']} | {fmt(t.get('score'))} | {bucket} | {rel} | "
                         + " | ".join(fmt((t.get('per_metric') or {}).get(m), 2) for m in METRICS) + " |")
            shown += 1
    if shown < scored + excluded:
        lines += ["", f"{scored + excluded - shown} more turns not listed (the table stops at {max_turns}): every turn "
                      "is in `duel.duel_verdict` and `duel.exported_buckets`."]
    lines.append("")
    return "\n".join(lines)


def calibration_lines(paths: Paths, panel: list[str]) -> list[str]:
    """The judge panel's measured quality, next to the gate (the latest calibration of exactly this
    panel: ``duel-assets calibrate``), or a line saying there is none."""
    from ..calibration.evidence import latest_calibration

    ev = latest_calibration(paths.home, panel)
    if ev is None:
        return [f"Judge panel calibration: none for this panel ({', '.join(panel)}); measure it "
                "with `duel-assets calibrate` (docs/calibration.md)."]
    return ev.lines()


@dataclass
class Report:
    path: Path
    text: str
    overall: Gate
    sft: dict  # rows, partitions_included, partitions_excluded, pruned
    provenance: dict
    card: Path


def write_report(paths: Paths, keys: list[str], cfg: ChainConfig, mode: int) -> Report:
    """report.md and the SFT export's card from the partitions' summaries and manifests (small
    files); shards of partitions that are not in the export are removed."""
    with file_lock(export_lock_path(paths), cfg.locks.timeout_s, what="export", setting="locks.timeout_s"):
        summaries = read_summaries(paths, keys)
        manifests = {k: m for k in summaries if (m := read_manifest(paths, k)) is not None}
        g = overall_gate(summaries, cfg.gate)
        prov = merge_provenance([s.get("provenance") or {} for s in summaries.values()])
        evidence = calibration_lines(paths, list(cfg.judges.models))
        records = {k: r for k in summaries if (r := read_json(partition_files(paths, k).curation)) is not None}
        text = render_report(summaries, g, mode, turns_of=lambda k: read_turns(paths, k),
                             files_of=lambda k: (manifests.get(k) or {}).get("files"), prov=prov, home=paths.home,
                             evidence=evidence, bucketing=bucketing(cfg),
                             curation=curation_records.markdown(curation_records.summarise(records), cfg))
        write_text_atomic(paths.report, text)
        sft = write_card(paths, summaries, manifests, g, cfg, prov, evidence, records)
    return Report(paths.report, text, g, sft, prov, paths.export_dir / "README.md")
