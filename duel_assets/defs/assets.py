"""The seven duel assets. Each one loads its inputs, calls the plain functions of
``duel_assets.lib`` and reports what happened as metadata; the logic lives in the library."""

from collections import Counter

import dagster as dg
import pandas as pd

from duel_assets.defs.partitions import prompt_files
from duel_assets.defs.resources import DuelSettings, LLMResource
from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib import duel, export, tables
from duel_assets.lib.pr_records import cached_pr_records
from duel_assets.lib.files import write_json_atomic
from duel_assets.lib.sampling import PromptFileError, load_prompt_file, sample_for_key
from duel_assets.lib.scoring import gate
from duel_assets.lib.settings import validate_partition_key

PARTITIONED = dict(partitions_def=prompt_files, group_name="duel", metadata={"partition_expr": "prompt_file"})


def _key(context: dg.AssetExecutionContext) -> str:
    return validate_partition_key(context.partition_key)


def _check_results(checks: list[duel.RateCheck], asset: str) -> list[dg.AssetCheckResult]:
    return [dg.AssetCheckResult(
        asset_key=asset, check_name=c.name, passed=c.passed, severity=dg.AssetCheckSeverity.WARN,
        description=c.description,
        metadata={"rate": c.rate, "threshold": c.threshold, "numerator": c.numerator, "denominator": c.denominator},
    ) for c in checks]


def _specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(n, asset=asset, description=f"{n} of {asset} against its threshold in chain.toml [checks]")
            for n in names]


@dg.asset(**PARTITIONED, kinds={"duckdb", "python"})
def sampled_turns(context: dg.AssetExecutionContext, settings: DuelSettings) -> pd.DataFrame:
    """Turns of the partition's prompt file `$DUEL_HOME/prompt/<key>.json`; when the file does not
    exist yet, the turns are sampled from the configured sources (seeded by the key) and written."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    pf = paths.prompt_file(key)
    origin = "prompt file"
    if not pf.exists():
        context.log.info(f"{pf} does not exist: sampling {cfg.sampling.turns_per_file} turns for {key}")
        write_json_atomic(pf, sample_for_key(key, cfg, cache_dir=paths.home / "cache" / "line_index"))
        origin = "sampled now"
    try:
        loaded = load_prompt_file(pf, max_turns=200)
    except PromptFileError as e:
        raise dg.Failure(description=str(e)) from None
    source_skips = Counter(loaded.meta.get("skipped") or {})
    rows = duel.turn_rows(loaded.turns)
    context.add_output_metadata({
        "turns": len(rows),
        "origin": origin,
        "prompt_file": dg.MetadataValue.path(str(pf)),
        "skipped": sum(loaded.skipped.values()) + sum(source_skips.values()),
        "skipped_by_reason": {**{f"source:{k}": v for k, v in source_skips.items()},
                              **{f"prompt_file:{k}": v for k, v in loaded.skipped.items()}},
        "sources": loaded.meta.get("sources") or [],
        "by_source": dict(Counter(t.source for t in loaded.turns)),
        "trimmed_histories": sum(t.trimmed for t in loaded.turns),
    })
    return tables.frame("sampled_turns", rows, key)


@dg.asset(**PARTITIONED, kinds={"duckdb"})
def pr_records(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame) -> pd.DataFrame:
    """The hidden PR record of every instance in the partition, read with DuckDB (projection and
    filter pushdown); an instance without a record is a row flagged `missing`."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    ids = sorted(set(sampled_turns["instance_id"]))
    df, hit = cached_pr_records(cfg.pr_records.path or None, ids, paths.home / "cache" / "pr_records" / f"{key}.parquet")
    missing = int(df["missing"].sum())
    if missing:
        context.log.warning(f"{missing} of {len(ids)} instances have no PR record")
    context.add_output_metadata({"instances": len(ids), "missing": missing, "cache_hit": hit,
                                 "source": cfg.pr_records.path or "bundled sample records"})
    return tables.frame("pr_records", df.to_dict("records"), key)


ROLE_ASSETS = {"king": "king_answers", "challenger": "challenger_answers", "judge": "judge_scores"}
_CALL_OUT = dict(is_required=False, group_name="duel", metadata={"partition_expr": "prompt_file"},
                 kinds={"duckdb", "openai"})


@dg.multi_asset(
    name="duel_calls",
    outs={
        "king_answers": dg.AssetOut(**_CALL_OUT, description=(
            "The baseline answer to every turn, generated blind: the model sees only the history.")),
        "challenger_answers": dg.AssetOut(**_CALL_OUT, description=(
            "The candidate answer, generated with the hidden PR record under the blind-agent rule, "
            "with a leak check against the patch.")),
        "judge_scores": dg.AssetOut(**_CALL_OUT, description=(
            "Every (turn, judge, order): per-metric scores for challenger and opponent from the judge panel.")),
    },
    ins={"sampled_turns": dg.AssetIn(), "pr_records": dg.AssetIn()},
    internal_asset_deps={
        "king_answers": {dg.AssetKey("sampled_turns")},
        "challenger_answers": {dg.AssetKey("sampled_turns"), dg.AssetKey("pr_records")},
        "judge_scores": {dg.AssetKey("sampled_turns"), dg.AssetKey("pr_records"), dg.AssetKey("king_answers"),
                         dg.AssetKey("challenger_answers")},
    },
    partitions_def=prompt_files,
    can_subset=True,
    check_specs=[*_specs("king_answers", "format_ok_rate"), *_specs("challenger_answers", "format_ok_rate", "leak_rate"),
                 *_specs("judge_scores", "parse_rate")],
)
def duel_calls(context: dg.AssetExecutionContext, settings: DuelSettings, llm: LLMResource, warehouse: WarehouseResource,
               sampled_turns: pd.DataFrame, pr_records: pd.DataFrame):
    """The partition's LLM work in one step: king, challenger and judge calls share one event loop
    and one concurrency bound, and a turn is judged as soon as both its answers exist. Any subset
    can be materialized: judging alone reads the answers already in the warehouse."""
    key = _key(context)
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    roles = {r for r, a in ROLE_ASSETS.items() if a in selected}
    paths, cfg, mode = settings.paths(), settings.config(), settings.mode()
    turns = duel.turns_from_frame(sampled_turns)
    prs = duel.pr_by_instance(pr_records)
    stored = {}
    if "judge" in roles:
        for role in ("king", "challenger"):
            if role not in roles:
                df = warehouse.get().read_partition(ROLE_ASSETS[role], key)
                stored[role] = {r["turn_id"]: r for r in df.to_dict("records")}
    result = duel.run_stage(llm.caller(cfg, paths, context.log.info), turns, cfg, prs, mode, roles,
                            stored.get("king"), stored.get("challenger"), label=f"duel {key}")
    checks_selected = {(c.asset_key.to_user_string(), c.name) for c in context.selected_asset_check_keys}
    failures = []
    for role in ("king", "challenger", "judge"):
        if role not in roles:
            continue
        asset, rows, stats = ROLE_ASSETS[role], result.rows[role], result.stats[role]
        md = duel.role_metadata(role, rows, stats, cfg)
        if "per_judge" in md:
            md["per_judge"] = dg.MetadataValue.md(md["per_judge"])
        too_many = duel.too_many_failures(asset, stats, cfg)
        if too_many:
            failures.append(too_many)
            continue
        yield dg.Output(tables.frame(asset, rows, key), output_name=asset, metadata=md)
        checks = duel.judge_checks(rows, cfg) if role == "judge" else duel.answer_checks(rows, cfg, role)
        for c in _check_results(checks, asset):
            if (asset, c.check_name) in checks_selected:
                yield c
    if failures:
        raise dg.Failure(description="; ".join(failures) + ". Completed calls are cached: a re-run pays only for the rest.")


@dg.asset(**PARTITIONED, kinds={"duckdb"})
def duel_verdict(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame,
                 challenger_answers: pd.DataFrame, judge_scores: pd.DataFrame) -> pd.DataFrame:
    """Per-turn duel score (0-100), bucket and breakdown; the partition's gate (and the gate over all
    partitions) in the metadata."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    rows = duel.verdict_rows(judge_scores, challenger_answers, list(sampled_turns["turn_id"]), cfg)
    df = tables.frame("duel_verdict", rows, key)
    g = gate([r["score"] for r in rows], cfg.gate)
    export.write_partition_summary(paths, key, g, rows)
    registered = list(context.instance.get_dynamic_partitions(prompt_files.name))
    overall = export.overall_gate(export.read_summaries(paths, registered), cfg.gate)
    md = duel.verdict_metadata(rows, df, judge_scores)
    context.add_output_metadata({
        "gate": g.verdict,
        "gate_figures": g.to_dict(),
        "gate_all_partitions": overall.verdict,
        "gate_all_partitions_figures": overall.to_dict(),
        **md,
        "per_judge": dg.MetadataValue.md(md["per_judge"]),
        "score_histogram": dg.MetadataValue.md(md["score_histogram"]),
    })
    return df


@dg.asset(**PARTITIONED, kinds={"duckdb", "json"})
def exported_buckets(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame,
                     king_answers: pd.DataFrame, challenger_answers: pd.DataFrame, judge_scores: pd.DataFrame,
                     duel_verdict: pd.DataFrame) -> pd.DataFrame:
    """One JSON file per parsed turn under `$DUEL_HOME/{final,refined,defeat}/`, and report.md."""
    key = _key(context)
    paths, cfg, mode = settings.paths(), settings.config(), settings.mode()
    records = export.export_records(sampled_turns, king_answers, challenger_answers, judge_scores, duel_verdict, key)
    registered = list(context.instance.get_dynamic_partitions(prompt_files.name))
    done = export.export_partition(paths, key, records, registered, cfg, mode)
    rows, report = done.rows, done.report
    context.add_output_metadata({
        "exported": len(rows),
        "sft_rows": report.sft["rows"],
        "sft_rows_this_partition": done.sft["rows"],
        "sft_excluded_this_partition": done.sft["excluded"] or "",
        "sft_export": dg.MetadataValue.path(str(paths.export_dir)),
        "sft_partitions_included": len(report.sft["partitions_included"]),
        "sft_partitions_excluded": dict(list(report.sft["partitions_excluded"].items())[:50]),
        "by_bucket": dict(Counter(r["bucket"] for r in rows)),
        "report": dg.MetadataValue.path(str(report.path)),
        "gate_all_partitions": report.overall.verdict,
        "report_md": dg.MetadataValue.md(report.text[:60_000]),
        "turn_lineage": dg.MetadataValue.md(export.lineage_markdown(key, rows)),
    })
    return tables.frame("exported_buckets", rows, key)


ALL_ASSETS = [sampled_turns, pr_records, duel_calls, duel_verdict, exported_buckets]
