"""`duel-assets make-calibration` and `duel-assets calibrate`, and the stand-in's judge-oracle options.

`calibrate FILE` copies FILE to `$DUEL_HOME/calibration/<key>.jsonl`, registers `<key>` as a
partition of `judge_calibration` and materializes it in the persistent Dagster instance (so the UI
shows the run and its metadata), then prints the report (or, with `--json`, one JSON object).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def key_for(path: Path) -> str:
    """A partition key from a file name: its stem, characters outside [A-Za-z0-9._-] replaced by '_'."""
    name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    return re.sub(r"\.{3,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", name)) or "calibration"


def cmd_make_calibration(args) -> int:
    from duel_assets.lib.calibration import calibration_dir
    from duel_assets.lib.calibration.make import make_set
    from duel_assets.lib.calibration.pairs import write_set
    from duel_assets.lib.settings import ConfigError, Paths, load_config

    try:
        cfg = load_config()
        paths = Paths.from_env()
        home = paths.home
        # the sampler's own cache folder (JSONL line indexes, parquet footers), shared with `sample`
        made = make_set(cfg, args.n, seed=args.seed, tie_share=args.tie_share, cache_dir=paths.cache_dir)
    except (ConfigError, ValueError) as e:
        return _err(str(e))
    out = Path(args.output) if args.output else calibration_dir(home) / f"made_{args.n}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_set(out, made.pairs, made.header)
    h = made.header
    print(f"wrote {h['pairs']} labelled pairs to {out} ({h['distinct_turns']} distinct turns of {len(h['sources'])} source(s))")
    print(f"kinds: {json.dumps(h['kinds'])}")
    print(f"labels: {json.dumps(h['labels'])}; dataset step at position {json.dumps(h['reference_position'])}")
    if h["shortfall"]:
        print(f"shortfall: {h['shortfall']} of the {h['requested']} requested pairs (the sources hold no more "
              "distinct turn x kind combinations)", file=sys.stderr)
    print(f"next: duel-assets calibrate {out}")
    return 0


def _stage(src: Path, home: Path, key: str, replace: bool) -> Path:
    from duel_assets.lib.calibration import calibration_dir

    dest = calibration_dir(home) / f"{key}.jsonl"
    if dest.exists() and dest.resolve() == src.resolve():
        return dest
    if dest.exists() and not filecmp.cmp(dest, src, shallow=False) and not replace:
        raise FileExistsError(f"{dest} already holds a different set: pass --key NAME to keep both, or --replace")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def cmd_calibrate(args) -> int:
    from duel_assets.lib.calibration.pairs import CalibrationFileError, read_set
    from duel_assets.lib.calibration.report import load_summary, render_markdown, result_path
    from duel_assets.lib.calls import require_endpoint
    from duel_assets.lib.settings import ConfigError, Paths, endpoints, load_config, validate_partition_key

    src = Path(args.file)
    paths = Paths.from_env().ensure()
    try:
        cfg = load_config()
        key = validate_partition_key(args.key or key_for(src))
        cset = read_set(src)
        if not cset.pairs:
            first = f"; first: {cset.skips[0]}" if cset.skips else ""
            return _err(f"{src}: no valid labelled pair ({len(cset.skips)} lines skipped: {cset.skipped_by_reason()}{first})")
        ids = ", ".join(require_endpoint(ep).id for ep in endpoints.resolve_used(cfg, judges_only=True).values())
        staged = _stage(src, paths.home, key, args.replace)
    except (ConfigError, CalibrationFileError, FileExistsError) as e:
        return _err(str(e))
    for s in cset.skips:
        print(f"skipped {src} {s}", file=sys.stderr)
    print(f"calibrating {len(cset.pairs)} pairs of {staged} (partition {key}) against {ids}", file=sys.stderr)
    rc = _materialize(key, args.target_precision)
    if rc:
        return rc
    summary = load_summary(paths.home, key)
    if summary is None:
        return _err(f"{result_path(paths.home, key)}: the calibration run succeeded but wrote no result")
    print(json.dumps(summary, indent=1) if args.json else render_markdown(summary))
    return 0


def _materialize(key: str, target_precision: float | None) -> int:
    import dagster as dg

    from duel_assets.cli.common import instance as open_instance
    from duel_assets.cli.common import interrupted
    from duel_assets.defs.calibration import CALIBRATION_FILES, judge_calibration
    from duel_assets.defs.resources import build_resources
    from duel_assets.defs.runs import process_tags

    instance = open_instance()
    if key not in instance.get_dynamic_partitions(CALIBRATION_FILES):
        instance.add_dynamic_partitions(CALIBRATION_FILES, [key])
    os.environ.setdefault("DUEL_PROGRESS", "1")
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if target_precision is not None:
        run_config["ops"] = {"judge_calibration": {"config": {"target_precision": target_precision}}}
    result = dg.materialize([judge_calibration], partition_key=key, instance=instance, resources=build_resources(),
                            run_config=run_config, raise_on_error=False, tags={"duel/launched_by": "duel-assets calibrate", **process_tags()})
    if interrupted(result):  # SIGINT / SIGTERM
        raise KeyboardInterrupt
    if result.success:
        return 0
    for ev in result.all_events:
        if ev.is_step_failure:
            error = ev.step_failure_data.error
            message = error.message.strip()[:600] if error is not None else "no error recorded"
            print(f"[{key}] judge_calibration failed: {message}", file=sys.stderr)
    return 1


def add_subcommands(sub) -> None:
    m = sub.add_parser("make-calibration", help="build a labelled calibration set from real turns of the configured sources",
                       description="Build a labelled calibration set (JSONL) from real turns of the configured "
                                   "sources: pairs of answers where the better one is known. No LLM call is made.")
    m.add_argument("--n", type=int, default=200, help="number of labelled pairs (default 200)")
    m.add_argument("-o", "--output", help="JSONL file to write (default: $DUEL_HOME/calibration/made_<N>.jsonl)")
    m.add_argument("--seed", type=int, help="seed for turns, variants and positions (default: sampling.seed)")
    m.add_argument("--tie-share", type=float, default=0.125, help="share of tie pairs, the step reworded (default 0.125)")
    m.set_defaults(fn=cmd_make_calibration)
    c = sub.add_parser("calibrate", help="run the judge panel on a labelled set and report how often it is right",
                       description="Run the configured judge panel on a labelled set (its calls are paid for) and "
                                   "report how often it is right, per judge and per kind, with suggested bucket "
                                   "thresholds.")
    c.add_argument("file", help="labelled-duel JSONL file (docs/calibration.md)")
    c.add_argument("--key", help="partition key (default: the file name without .jsonl)")
    c.add_argument("--replace", action="store_true", help="replace a different set already staged under the same key")
    c.add_argument("--target-precision", type=float,
                   help="precision the suggested thresholds must reach (default: [calibration] target_precision, else 0.9)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    c.set_defaults(fn=cmd_calibrate)


def add_standin_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("judge oracle (judge requests about labelled pairs; see lib/calibration/oracle.py)")
    g.add_argument("--labels", help="labelled-duel JSONL file whose pairs the oracle judges")
    g.add_argument("--judge-accuracy", type=float, default=1.0, help="P: probability a judge's opinion of a pair is right")
    g.add_argument("--position-bias", type=float, default=0.0,
                   help="Q: probability a judgement ignores the pair and gives position A every metric")
    g.add_argument("--oracle-seed", type=int, default=0, help="seed of the oracle's draws")


def standin_kwargs(args) -> dict:
    """The stand-in's ``oracle`` keyword from the command line ({} without --labels)."""
    if not getattr(args, "labels", None):
        if args.judge_accuracy != 1.0 or args.position_bias != 0.0:
            raise SystemExit(_err("--judge-accuracy and --position-bias need --labels FILE"))
        return {}
    from duel_assets.lib.calibration.oracle import JudgeOracle
    from duel_assets.lib.calibration.pairs import CalibrationFileError

    try:
        oracle = JudgeOracle.from_file(args.labels, args.judge_accuracy, args.position_bias, args.oracle_seed)
    except (CalibrationFileError, ValueError) as e:
        raise SystemExit(_err(str(e))) from None
    print(f"judge oracle: {len(oracle)} labelled pairs from {args.labels}, accuracy {args.judge_accuracy}, "
          f"position bias {args.position_bias}, seed {args.oracle_seed}", flush=True)
    return {"oracle": oracle}
