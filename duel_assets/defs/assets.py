"""The seven duel assets. Each one loads its inputs, calls the plain functions of
``duel_assets.lib`` and reports what happened as metadata; the logic lives in the library."""

from collections import Counter
from typing import TypedDict

import dagster as dg
import pandas as pd

from duel_assets.defs.metadata import metadata as readable_metadata
from duel_assets.defs.partitions import prompt_files
from duel_assets.defs.resources import LLMResource
from duel_assets.defs.settings import DuelSettings
from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib import tables
from duel_assets.lib.calibration.evidence import gate_metadata
from duel_assets.lib.calls.budget import BudgetReached
from duel_assets.lib.duel import checks, steps
from duel_assets.lib.duel.stage import run_stage
from duel_assets.lib.export import documents, outcome, partition, summary
from duel_assets.lib.export.paths import partition_files
from duel_assets.lib.readable import Link
from duel_assets.lib.review.running import partition_url, review_base
from duel_assets.lib.sampling.curation import records as curation_records
from duel_assets.lib.sampling.pr_records import cached_pr_records, hidden_by_instance, hidden_share
from duel_assets.lib.sampling.prompt_files import PromptFileError
from duel_assets.lib.sampling.prompt_store import RESAMPLE_TAG, ensure_prompt_file, load_partition
from duel_assets.lib.settings import ConfigError, validate_partition_key
from duel_assets.lib.system.files import write_json_atomic
from duel_assets.lib.verdict import spend, verdicts
from duel_assets.lib.verdict.metadata import bucketing_line, spend_entries, verdict_metadata


# keyword arguments the partitioned assets / the call outputs share, typed so that each reaches its parameter
class _Partitioned(TypedDict):
    partitions_def: dg.DynamicPartitionsDefinition
    group_name: str
    metadata: dict[str, str]


class _CallOut(TypedDict):
    is_required: bool
    group_name: str
    metadata: dict[str, str]
    kinds: set[str]


PARTITIONED: _Partitioned = {"partitions_def": prompt_files, "group_name": "duel", "metadata": {"partition_expr": "prompt_file"}}


def _key(context: dg.AssetExecutionContext) -> str:
    return validate_partition_key(context.partition_key)


def _check_results(results: list[checks.RateCheck], asset: str) -> list[dg.AssetCheckResult]:
    return [dg.AssetCheckResult(
        asset_key=asset, check_name=c.name, passed=c.passed, severity=dg.AssetCheckSeverity.WARN,
        description=c.description,
        metadata={"rate": c.rate, "threshold": c.threshold, "numerator": c.numerator, "denominator": c.denominator},
    ) for c in results]


def _specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(n, asset=asset, description=f"{n} of {asset} against its threshold in chain.toml [checks]")
            for n in names]


def _materialized_before(context: dg.AssetExecutionContext, key: str) -> bool:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("sampled_turns"), asset_partitions=[key]), limit=1)
    return bool(records.records)


@dg.asset(**PARTITIONED, kinds={"duckdb", "python"})
def sampled_turns(context: dg.AssetExecutionContext, settings: DuelSettings) -> pd.DataFrame:
    """Turns of the partition's prompt file `$DUEL_HOME/prompt/<key>.json`; a key never sampled
    before is sampled from the configured sources (seeded by the key) and written. A prompt file
    that existed and was deleted fails the step unless the run is tagged `duel/resample=true`."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    pf = paths.prompt_file(key)
    resample = context.run.tags.get(RESAMPLE_TAG) == "true"
    try:
        held_before = not pf.exists() and _materialized_before(context, key)
        origin = ensure_prompt_file(paths.home, pf, key, cfg, paths.cache_dir, resample, held_before)
        loaded = load_partition(paths.home, pf, key, cfg)
    except (PromptFileError, ConfigError) as e:
        raise dg.Failure(description=str(e)) from None
    source_skips = Counter(loaded.meta.get("skipped") or {})
    rows = tables.turn_rows(loaded.turns)
    at_load = loaded.meta.get("decontamination_at_load") or {}
    curation = curation_records.partition_record(loaded.meta, at_load, len(rows))
    write_json_atomic(partition_files(paths, key).curation, curation)
    context.add_output_metadata({
        **settings.config_metadata(cfg),
        "turns": len(rows),
        "origin": origin,
        "prompt_file": dg.MetadataValue.path(str(pf)),
        "skipped": sum(loaded.skipped.values()) + sum(source_skips.values()),
        "skipped_by_reason": {**{f"source:{k}": v for k, v in source_skips.items()},
                              **{f"prompt_file:{k}": v for k, v in loaded.skipped.items()}},
        # while sampling and when the prompt file was loaded: the part of `skipped` that is histories held twice
        "duplicate_history": loaded.skipped.get("duplicate_history", 0) + source_skips.get("duplicate_history", 0),
        "sources": loaded.meta.get("sources") or [],
        "by_source": dict(Counter(t.source for t in loaded.turns)),
        "by_license": dict(Counter(t.license or "(none in row)" for t in loaded.turns)),
        "with_row_hidden_info": sum(1 for t in loaded.turns if t.hidden),
        "trimmed_histories": sum(t.trimmed for t in loaded.turns),
        # decontamination: rows the sampler dropped, and turns this load excluded (no call is made for them) or tagged
        "contaminated_excluded": sum(1 for t in loaded.turns if t.excluded_reason),
        "contaminated_by_benchmark": curation_records.metadata_counts(curation),
        "curation_record": dg.MetadataValue.path(str(partition_files(paths, key).curation)),
    })
    return tables.frame("sampled_turns", rows, key)


@dg.asset(**PARTITIONED, kinds={"duckdb"})
def pr_records(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame) -> pd.DataFrame:
    """The hidden record of every instance in the partition: from the turn's own row when it carries
    one, else from the `[[pr_records]]` sources in order (DuckDB, projection and filter pushdown);
    `record_source` says which. An instance without a record is a row flagged `missing`."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    turns = sampled_turns[["instance_id", "hidden"]].to_dict("records") if "hidden" in sampled_turns else \
        [{"instance_id": i} for i in sampled_turns["instance_id"]]
    ids = sorted(set(sampled_turns["instance_id"]))
    try:
        df, hit = cached_pr_records(cfg.pr_records, ids, paths.pr_records_cache(key),
                                    hidden_by_instance(turns))
    except ConfigError as e:
        raise dg.Failure(description=str(e)) from None
    share = hidden_share(sampled_turns["instance_id"], df)
    if share["instances_missing"]:
        context.log.warning(f"{share['instances_missing']} of {len(ids)} instances have no hidden record")
    context.add_output_metadata({**settings.config_metadata(cfg), **share, "cache_hit": hit,
                                 "sources": [s.path for s in cfg.pr_records.specs] or ["bundled sample records"]})
    return tables.frame("pr_records", df.to_dict("records"), key)


ROLE_ASSETS = {"king": "king_answers", "challenger": "challenger_answers", "judge": "judge_scores"}
_CALL_OUT: _CallOut = {"is_required": False, "group_name": "duel", "metadata": {"partition_expr": "prompt_file"},
                       "kinds": {"duckdb", "openai"}}


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
    turns = tables.turns_from_frame(sampled_turns)
    prs = tables.by_instance("pr_records", pr_records)
    stored: dict[str, dict[str, dict]] = {}
    if "judge" in roles:
        for role in ("king", "challenger"):
            if role not in roles:
                df = warehouse.get().read_partition(ROLE_ASSETS[role], key)
                stored[role] = tables.by_turn(ROLE_ASSETS[role], df)
    try:
        result = run_stage(llm.caller(cfg, paths, context.log.info), turns, cfg, prs, mode, roles,
                           stored.get("king"), stored.get("challenger"), label=f"duel {key}")
    except BudgetReached as e:
        raise dg.Failure(description=str(e)) from None
    checks_selected = {(c.asset_key.to_user_string(), c.name) for c in context.selected_asset_check_keys}
    failures: list[str] = []
    for role in ("king", "challenger", "judge"):
        if role not in roles:
            continue
        asset, rows, stats = ROLE_ASSETS[role], result.rows[role], result.stats[role]
        md = {**settings.config_metadata(cfg), **steps.role_metadata(role, rows, stats, cfg)}
        if "per_judge" in md:
            md["per_judge"] = dg.MetadataValue.md(md["per_judge"])
        reason = steps.too_many_failures(asset, stats, cfg)
        if role == "judge" and reason is None:
            reason = steps.nothing_to_judge(key, result.judge_skips, len(turns), failures)
            md["not_judged_turns_by_reason"] = dict(result.judge_skips)
        if reason:
            failures.append(reason)
            continue
        yield dg.Output(tables.frame(asset, rows, key), output_name=asset, metadata=md)
        found = checks.judge_checks(rows, cfg) if role == "judge" else checks.answer_checks(rows, cfg, role)
        for c in _check_results(found, asset):
            if (asset, c.check_name) in checks_selected:
                yield c
    if failures:
        raise dg.Failure(description="; ".join(failures) + ". Completed calls are cached: a re-run pays only for the rest.")


@dg.asset(**PARTITIONED, kinds={"duckdb"}, check_specs=[dg.AssetCheckSpec(
    "dueled_turns", asset="duel_verdict",
    description="the partition dueled at least one turn and the judges parsed at least one: fails when every "
                "turn was excluded (by reason) or none parsed")])
def duel_verdict(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame,
                 king_answers: pd.DataFrame, challenger_answers: pd.DataFrame, judge_scores: pd.DataFrame):
    """Per-turn duel score (0-100), bucket and breakdown, or the reason a turn is excluded; the
    partition's gate, the bucket thresholds, per-judge statistics and who answered in the metadata.
    Writes the partition's summary and turn detail under `report/` (the gate over all partitions is
    `duel_report`'s)."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    rows = verdicts.verdict_rows(judge_scores, challenger_answers, list(sampled_turns["turn_id"]), cfg, king_answers)
    g = verdicts.partition_gate(rows, cfg.gate)
    prov = verdicts.provenance(king_answers, challenger_answers, judge_scores)
    written = summary.write_partition_summary(paths, key, g, rows, prov, verdicts.bucketing(cfg))
    accepted = sum(1 for r in rows if r.get("bucket") in ("final", "refined"))
    cost = spend.spend({"king": king_answers, "challenger": challenger_answers, "judge": judge_scores}, cfg.prices, accepted)
    md = {**settings.config_metadata(cfg),
          **verdict_metadata(rows, judge_scores, g, prov, cfg.metric_weights),
          "bucketing": bucketing_line(verdicts.bucketing(cfg)),
          **spend_entries(cost),
          # the judge panel's measured quality next to the gate (lib/calibration/evidence.py), or a note
          # that no calibration of this panel exists
          **gate_metadata(paths.home, cfg.judges.models)}
    base = review_base(paths.home, cfg.review.url)  # `duel-assets review` running, or [review] url
    if base:
        md["review"] = Link(partition_url(base, key))
    yield dg.Output(tables.frame("duel_verdict", rows, key), metadata=readable_metadata(md))
    nothing = outcome.delivered_nothing(key, written)
    yield dg.AssetCheckResult(
        asset_key="duel_verdict", check_name="dueled_turns", passed=nothing is None,
        severity=dg.AssetCheckSeverity.ERROR, description=nothing or outcome.partition_line(key, written),
        metadata={"turns": g.turns + sum(g.excluded.values()), "dueled": g.turns, "parsed": g.parsed_turns,
                  "excluded_by_reason": g.excluded})


@dg.asset(**PARTITIONED, kinds={"duckdb", "json", "parquet"})
def exported_buckets(context: dg.AssetExecutionContext, settings: DuelSettings, sampled_turns: pd.DataFrame,
                     king_answers: pd.DataFrame, challenger_answers: pd.DataFrame, judge_scores: pd.DataFrame,
                     duel_verdict: pd.DataFrame) -> pd.DataFrame:
    """One JSON file per exported turn under `$DUEL_HOME/{final,refined,defeat}/<key>/`, this
    partition's SFT shards and its export manifest; only this partition's files."""
    key = _key(context)
    paths, cfg = settings.paths(), settings.config()
    records = documents.export_records(sampled_turns, king_answers, challenger_answers, judge_scores, duel_verdict, key)
    g = verdicts.partition_gate(tables.records("duel_verdict", duel_verdict), cfg.gate)
    done = partition.export_partition(paths, key, records, cfg.export, g.verdict, cfg.locks.timeout_s)
    files = partition_files(paths, key)
    context.add_output_metadata({
        **settings.config_metadata(cfg),
        "exported": len(done.rows),
        "by_bucket": dict(Counter(r["bucket"] for r in done.rows)),
        "sft_rows": done.sft["rows"],
        "sft_excluded": done.sft["excluded"] or "",
        "sft_layout": f"{done.sft['layout']} (reasoning: {done.sft['reasoning']})",
        "sft_shard": dg.MetadataValue.path(str(files.parquet)),
        "manifest": dg.MetadataValue.path(str(files.manifest)),
        "turn_lineage": dg.MetadataValue.md(documents.lineage_markdown(key, done.rows)),
    })
    return tables.frame("exported_buckets", done.rows, key)


ALL_ASSETS = [sampled_turns, pr_records, duel_calls, duel_verdict, exported_buckets]
