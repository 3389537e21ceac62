"""What the commands share: the Dagster instance, partition registration, error lines."""
from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

from duel_assets.lib.settings import Paths, scrub

DAGSTER_YAML = """\
# Written by duel-assets. The DuckDB warehouse takes one writer at a time: the IO manager retries
# on the lock, and the run queue keeps the number of runs writing at once small.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
"""


def errors_out(lines: list[str], code: int = 2) -> int:
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return code


def ensure_dagster_home(paths: Paths | None = None) -> Path:
    home = (paths or Paths.from_env()).dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)  # for Dagster itself and the processes it starts
    return home


def instance(paths: Paths | None = None):
    ensure_dagster_home(paths)
    from dagster import DagsterInstance

    return DagsterInstance.get()


def registered(inst) -> list[str]:
    from duel_assets.defs.partitions import PROMPT_FILES

    return list(inst.get_dynamic_partitions(PROMPT_FILES))


def register_partitions(inst, keys: list[str]) -> list[str]:
    from duel_assets.defs.partitions import PROMPT_FILES
    from duel_assets.lib.settings import validate_partition_key

    known = set(registered(inst))
    new = [validate_partition_key(k) for k in dict.fromkeys(keys) if k not in known]
    if new:
        inst.add_dynamic_partitions(PROMPT_FILES, new)
    return new


def close_matches(key: str, candidates) -> str:
    found = difflib.get_close_matches(key, sorted(set(candidates)), n=5, cutoff=0.6)
    return ", ".join(found) if found else "none"


def _first_line(message: str) -> str:
    lines = [ln for ln in message.strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^(?:\w+\.)+(\w+: )", r"\1", text)  # dagster._core...Failure: x -> Failure: x
    return re.sub(r"^Failure: ", "", text)


def underlying_error(error) -> str:
    """A step failure's own cause (a ``SerializableErrorInfo``): the innermost exception's message,
    not Dagster's "Error occurred while executing op ..." wrapper. Secrets are scrubbed."""
    if error is None:  # a failure event may carry no error information
        return "no error recorded"
    while getattr(error, "cause", None) is not None:
        error = error.cause
    text = _first_line(error.message or "") or error.cls_name
    if error.cls_name and not text.startswith(error.cls_name) and error.cls_name not in ("Failure", "ConfigError"):
        text = f"{error.cls_name}: {text}"
    return scrub(text)[:600]


def exception_text(exc: BaseException) -> str:
    """The innermost cause of an exception raised outside a step (e.g. by the run storage), one line."""
    seen = set()
    while (inner := exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = inner
    return scrub(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")[:600]


def cmd_bench(args) -> int:
    from duel_assets.bench import main as bench_main

    return bench_main(as_json=args.json, only=args.only)
