"""The SFT export's dataset card (``export/README.md``) and which partitions it holds."""
from __future__ import annotations

from collections import Counter

from ..sampling.curation import records as curation_records
from ..sampling.readers.licenses import source_license
from ..sampling.sources import BUNDLED_SOURCES
from ..settings import ChainConfig, Paths
from ..system.files import write_text_atomic
from ..verdict.gate import Gate
from ..verdict.verdicts import bucketing, merge_provenance, standin_note
from .layouts import SOURCE_ENCODINGS
from .markdown import bucketing_lines, gate_lines, gate_table, models_line
from .sft import COLUMNS, NO_LICENSE, gated_out, prune_shards
from .trajectory_card import trajectory_card_lines, trajectory_layout_lines, trajectory_target_lines
from .trajectory_shards import remove_shards, write_shards


def select(summaries: dict[str, dict], manifests: dict[str, dict], cfg: ChainConfig) -> tuple[list[str], dict[str, str]]:
    """(partitions in the export, partitions left out and why)."""
    included, excluded = [], {}
    ex = cfg.export
    for key, s in summaries.items():
        sft = (manifests.get(key) or {}).get("sft")
        if sft is None:
            excluded[key] = "not exported yet"
        elif sft.get("excluded"):
            excluded[key] = sft["excluded"]
        elif (sft.get("layout"), sft.get("reasoning")) != (ex.layout, ex.reasoning):
            excluded[key] = (f"written as layout {sft.get('layout')!r} / reasoning {sft.get('reasoning')!r}: "
                             "materialize its exported_buckets again")
        elif sft.get("columns", 1) != COLUMNS:
            excluded[key] = "written before the shards had their current columns: materialize its exported_buckets again"
        elif gated_out(s["gate"]["verdict"], ex.require_gate):
            excluded[key] = "gate REJECT"
        else:
            included.append(key)
    return included, excluded


def _layout_lines(layout: str, reasoning: str, sources: list[str]) -> list[str]:
    if layout == "trajectory":
        lines = trajectory_layout_lines()
    elif layout == "openai":
        lines = [
            "Layout `openai`: `messages` is a list of OpenAI chat messages `{role, content, reasoning_content, "
            "tool_calls, tool_call_id, name, train}`; each tool call is `{id, type: \"function\", function: {name, "
            "arguments}}` with `arguments` a JSON string. `tools` is a list of `{type, function: {name, description, "
            "parameters}}` where `parameters` is the tool's JSON Schema as a JSON string (every tool's schema has "
            "its own keys and one parquet schema holds all shards; `json.loads` it before `apply_chat_template`); "
            "`tools` is null for bash-block rows.",
        ]
    else:
        lines = ["Layout `source`: `messages` and `tools` are JSON strings in the encoding of the row's source "
                 "format, as the project's readers read them back:", ""]
        lines += [f"- `{s}`: {SOURCE_ENCODINGS.get(s, 'OpenAI chat messages, as for coderforge')}" for s in sources]
        lines += ["", "`tools` is the trajectory's tool list (null for bash-block rows)."]
    lines += ["", "Reasoning: " + (
        "kept. In `openai` rows it is each assistant message's `reasoning_content` (a `<think>` block of the "
        "source moves there; the target's is the reasoning the model returned); in `source` rows it stays where "
        "the source keeps it, and the target's follows that convention."
        if reasoning == "keep" else
        "dropped: no message has `reasoning_content`, and `<think>` blocks are removed from assistant content.")]
    return lines


def _target_lines(layout: str) -> list[str]:
    if layout == "trajectory":
        return trajectory_target_lines()
    where = "the last message" if layout == "openai" else "the decoded `messages` from `target_index` on"
    return [
        f"The target is {where}: `target_index` is the index of its first message and only target messages have "
        "`train: true`. The history's assistant messages are the source agent's moves, not duel winners: train "
        "on the target only. With axolotl's `chat_template` datasets, set `message_field_training: train`. With "
        "TRL's `SFTTrainer`, whose `assistant_only_loss` trains every assistant message, map rows to "
        "prompt-completion first: `prompt = messages[:target_index]`, `completion = messages[target_index:]`.",
    ]


def _licence_lines(rows_by: dict[str, int], sources: dict[str, list[str]]) -> list[str]:
    """One line per configured source path, from the licence facts of :mod:`..licenses`."""
    lines = ["## Licences", "",
             "Rows keep the licence of the trajectories they were cut from; attribution goes to the source.", "",
             "| source format | path | dataset | licence | attribution |", "|---|---|---|---|---|"]
    for fmt_ in sorted({*sources, *(k.split("\t")[0] for k in rows_by)}):
        for path in sources.get(fmt_) or [""]:
            e = source_license(fmt_, path)
            lic = e["license"] or ("per row (`license` column)" if e["per_row"] else f"none recorded ({e['note']})")
            lines.append(f"| {fmt_} | {path or '-'} | {e['dataset']} | {lic} | {e['attribution']} |")
    lines += ["", "Per-row licences (a row's `license` column):", "", "| source | license | rows |", "|---|---|---:|"]
    for k, n in sorted(rows_by.items()):
        src, lic = k.split("\t")
        lines.append(f"| {src} | {lic} | {n} |")
    if not rows_by:
        lines.append(f"| - | {NO_LICENSE} | 0 |")
    return lines


def _in_export(key: str, g: dict, included: list[str], excluded: dict[str, str]) -> str:
    if key not in included:
        return "no: " + excluded.get(key, "")
    return "yes" if g["verdict"] == "ACCEPT" else f"yes, with gate {g['verdict']} (not required)"


def render_card(summaries: dict[str, dict], manifests: dict[str, dict], overall: Gate, included: list[str],
                excluded: dict[str, str], cfg: ChainConfig, prov: dict, evidence: list[str] | None = None,
                curation: list[str] | None = None, trajectories: dict | None = None) -> str:
    by: dict[str, Counter[str]] = {what: Counter() for what in ("source", "bucket", "protocol", "source_license")}
    for k in included:
        for what, counter in by.items():
            counter.update(manifests[k]["sft"].get(f"by_{what}") or {})
    rows = sum(manifests[k]["sft"]["rows"] for k in included)
    what = "training turns: each row is a coding-agent history and, as the target, a challenger answer that"
    if trajectories is not None:  # rows are whole trajectories; the counts below are theirs
        rows, what = trajectories["rows"], "trajectories with at least one exported turn; their trained messages are answers that"
        by["source"], by["protocol"] = Counter(trajectories["by_source"]), Counter(trajectories["by_protocol"])
        by["source_license"] = Counter(trajectories["by_source_license"])
    sources: dict[str, list[str]] = {}
    for s in cfg.sources or BUNDLED_SOURCES:
        sources.setdefault(s.format, []).append(s.path)
    # who answered the exported rows: the included partitions' provenance (all partitions' when none is in)
    prov = merge_provenance([summaries[k].get("provenance") or {} for k in included]) if included else prov
    note = standin_note(prov)
    won = ("won its duel" if "defeat" not in cfg.export.buckets
           else "was dueled (the `defeat` bucket holds answers that lost their duel)")
    lines = [
        "---", "configs:", "- config_name: default", "  data_files:", "  - split: train", "    path: data/*.parquet",
        "---", "", "# duel_assets SFT export", "",
        *([f"**{note}** These rows are for trying the pipeline, not for training.", ""] if note else []),
        f"{rows} {what} {won} (buckets: {', '.join(cfg.export.buckets)}). {models_line(prov)}", "",
        *(["Load: `datasets.load_dataset(\"<this folder>\")` (one parquet shard per prompt file under `data/`), or the "
           "JSON Lines shards under `jsonl/`."] if rows else
          ["Nothing to load: the export holds no row yet (the table under \"Gate\" says which partitions are in it and "
           "why the others are left out), so the folder has no shard for `datasets.load_dataset` to read."]), "",
        *(["**The gate is not required for this export** (`[export] require_gate = false`): rows of partitions "
           "whose gate is REJECT are in it, marked so in the table under \"Gate\".", ""]
          if not cfg.export.require_gate else []),
        "## Layout", "", *_layout_lines(cfg.export.layout, cfg.export.reasoning, sorted(by["source"]) or sorted(sources)),
        "", "## Target", "", *_target_lines(cfg.export.layout), "",
        *[line for what in ("source", "bucket", "protocol")
          for line in (f"| {what} | turns |", "|---|---:|", *[f"| {k} | {v} |" for k, v in sorted(by[what].items())], "")],
        *(bucketing_lines({k: summaries[k] for k in included}, bucketing(cfg), "every partition in the export")
          if included else bucketing_lines(summaries, bucketing(cfg))), "",
        *_licence_lines(dict(by["source_license"]), sources), "",
        *([*trajectory_card_lines(trajectories, cfg.export), ""] if trajectories is not None else []),
        *([*curation, ""] if curation else []),
        "## Gate", "", *gate_lines(overall.to_dict()), "", *([*evidence, ""] if evidence else []),
        *gate_table(summaries, "in export", lambda k, g: _in_export(k, g, included, excluded)),
    ]
    return "\n".join(lines) + "\n"


def write_card(paths: Paths, summaries: dict[str, dict], manifests: dict[str, dict], overall: Gate, cfg: ChainConfig,
               prov: dict, evidence: list[str] | None = None, records: dict[str, dict] | None = None) -> dict:
    """The export's README (dataset card); shards of partitions that are not in the export are removed
    (those not exported yet are left to their own run)."""
    included, excluded = select(summaries, manifests, cfg)
    pruned = prune_shards(paths, set(included) | {k for k, why in excluded.items() if why == "not exported yet"})
    trajectories = write_shards(paths, included, cfg.export) if cfg.export.layout == "trajectory" else None
    if trajectories is None:
        pruned += remove_shards(paths)
    # decontamination and near-duplicates of the partitions in the export
    curation = curation_records.markdown(curation_records.summarise({k: r for k, r in (records or {}).items()
                                                                     if k in included}), cfg)
    write_text_atomic(paths.export_dir / "README.md", render_card(summaries, manifests, overall, included, excluded, cfg,
                                                                  prov, evidence, curation, trajectories))
    rows = trajectories["rows"] if trajectories is not None else sum(manifests[k]["sft"]["rows"] for k in included)
    return {"rows": rows, "trajectories": trajectories, "partitions_included": included,
            "partitions_excluded": excluded, "pruned": pruned, "layout": cfg.export.layout,
            "reasoning": cfg.export.reasoning}
