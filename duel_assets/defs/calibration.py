"""The judge panel measured on labelled duels: the `judge_calibration` asset, one partition per
calibration file `$DUEL_HOME/calibration/<key>.jsonl` (group `calibration`). The logic lives in
``duel_assets.lib.calibration``."""
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from duel_assets.defs.resources import LLMResource
from duel_assets.defs.settings import DuelSettings
from duel_assets.lib.calibration import calibration_dir
from duel_assets.lib.calibration.judging import ROW_COLUMNS, run_panel
from duel_assets.lib.calibration.pairs import CalibrationFileError, read_set
from duel_assets.lib.calibration.report import (
    figures_table,
    kind_table,
    metric_table,
    render_markdown,
    save_summary,
    summarise,
    threshold_lines,
)
from duel_assets.lib.duel.steps import too_many_failures
from duel_assets.lib.settings import validate_partition_key

CALIBRATION_FILES = "calibration_files"  # the partitions definition's name, as the instance stores it
calibration_files = dg.DynamicPartitionsDefinition(name=CALIBRATION_FILES)

_TEXT = {"pair_id", "kind", "label", "judge", "order", "parse_error", "winner", "reason", "raw_reply", "error_kind",
         "error", "call_key", "calibration_file", "reply_format"}
_FLAGS = {"parsed", "retried", "cached"}


class CalibrationRunConfig(dg.Config):
    target_precision: Optional[float] = Field(
        default=None, description="Precision the suggested final/refined thresholds must reach (default: "
                                  "chain.toml [calibration] target_precision, else 0.9)")


def judgement_frame(rows: list[dict], key: str) -> pd.DataFrame:
    """One row per pair x judge x order, in a fixed column order with explicit types."""
    cols = ["calibration_file", *ROW_COLUMNS]
    df = pd.DataFrame([{**r, "calibration_file": key} for r in rows], columns=cols)
    types = {c: "string" if c in _TEXT else "boolean" if c in _FLAGS else "Int64" for c in cols}
    return df.astype(types)[cols]


@dg.asset(partitions_def=calibration_files, group_name="calibration", kinds={"duckdb", "openai"},
          metadata={"partition_expr": "calibration_file"})
def judge_calibration(context: dg.AssetExecutionContext, config: CalibrationRunConfig, settings: DuelSettings,
                      llm: LLMResource) -> pd.DataFrame:
    """The configured judge panel on the labelled pairs of `$DUEL_HOME/calibration/<key>.jsonl`, every
    pair in both orders through the duel's call layer and cache: accuracy against the labels, Cohen's
    kappa, position consistency, parse and tie rates (per judge, panel majority and the duel score's
    rule, with bootstrap 95% intervals), accuracy per kind, thresholds from data, tokens."""
    key = validate_partition_key(context.partition_key)
    paths, cfg = settings.paths(), settings.config()
    path = calibration_dir(paths.home) / f"{key}.jsonl"
    try:
        cset = read_set(path)
    except CalibrationFileError as e:
        raise dg.Failure(description=str(e)) from None
    if cset.skips:
        context.log.warning(f"{path}: {len(cset.skips)} lines skipped: " + "; ".join(map(str, cset.skips[:20])))
    if not cset.pairs:
        raise dg.Failure(description=f"{path}: no valid labelled pair ({len(cset.skips)} lines skipped: "
                                     f"{cset.skipped_by_reason()})")
    run = run_panel(llm.caller(cfg, paths, context.log.info, judges_only=True), cset.pairs, cfg, label=f"calibration {key}")
    failed = too_many_failures("judge_calibration", run.stats, cfg)
    if failed:
        raise dg.Failure(description=failed + ". Completed calls are cached: a re-run pays only for the rest.")
    summary = summarise(cset, run, cfg, key, target=config.target_precision)
    saved = save_summary(paths.home, summary)
    th = summary["thresholds"]
    context.add_output_metadata({
        **settings.config_metadata(cfg),
        "pairs": summary["pairs"], "skipped": summary["skipped"], "skipped_by_reason": summary["skipped_by_reason"],
        "skipped_lines": "\n".join(summary["skipped_lines"][:50]), "panel": summary["panel"],
        "labels": summary["labels"], "kinds": summary["kinds"],
        **{f: summary[f] for f in ("accuracy", "accuracy_ci", "accuracy_with_ties", "accuracy_with_ties_ci", "kappa",
                                   "kappa_ci", "position_consistency", "position_consistency_ci", "parse_rate",
                                   "parse_rate_ci", "tie_rate", "tie_rate_ci")},
        "figures": dg.MetadataValue.md(figures_table(summary)),
        "per_judge": summary["per_judge"],
        "majority": {k: v for k, v in summary["majority"].items() if k not in ("by_kind", "per_metric")},
        "accuracy_by_kind": dg.MetadataValue.md(kind_table(summary)),
        "per_metric_agreement": dg.MetadataValue.md(metric_table(summary)),
        "thresholds": dg.MetadataValue.md("\n".join(threshold_lines(summary))),
        "suggested_thresholds": th["suggested"], "target_precision": th["target_precision"],
        "tokens": summary["tokens"], **run.stats.as_metadata(),
        "calibration_file": dg.MetadataValue.path(str(path)),
        "summary_file": dg.MetadataValue.path(str(saved)),
        "report": dg.MetadataValue.md(render_markdown(summary)),
    })
    return judgement_frame(run.rows, key)


CALIBRATION_ASSETS = [judge_calibration]
