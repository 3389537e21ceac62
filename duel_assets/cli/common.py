"""What the commands share: the Dagster instance, partition registration, error lines."""
from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

from duel_assets.defs.instance import DAGSTER_YAML, EARLIER_YAMLS
from duel_assets.lib.settings import Paths, scrub

_READY = ".duel-instance-ready"  # written once the instance's storages exist and are migrated
_INIT_LOCK = ".duel-instance.lock"


def errors_out(lines: list[str], code: int = 2) -> int:
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return code


def lock_wait_s() -> float:
    """``locks.timeout_s`` of chain.toml; the default when the file does not validate (the command
    that needs the configuration reports it)."""
    from duel_assets.lib.settings import ConfigError, load_config
    from duel_assets.lib.system.locks import DEFAULT_LOCK_TIMEOUT_S

    try:
        return float(load_config().locks.timeout_s)
    except ConfigError:
        return DEFAULT_LOCK_TIMEOUT_S


def _ready_stamp() -> str:
    from dagster import __version__

    return f"dagster {__version__}\n"


def ensure_dagster_home(paths: Paths | None = None) -> Path:
    """$DAGSTER_HOME with its dagster.yaml, its storages created and migrated to this Dagster's
    schema. The first process to use a home does that under an inter-process lock while any other
    waits (bounded by ``locks.timeout_s``): two commands starting together on a fresh home never
    race to create the same tables. Later calls only read the ready mark."""
    home = (paths or Paths.from_env()).dagster_home
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)  # for Dagster itself and the processes it starts
    cfg, ready = home / "dagster.yaml", home / _READY
    if _current(cfg) and ready.is_file() and ready.read_text() == _ready_stamp():
        return home
    from duel_assets.lib.system.files import write_text_atomic
    from duel_assets.lib.system.locks import file_lock

    with file_lock(home / _INIT_LOCK, lock_wait_s(), what=f"Dagster instance {home}", setting="locks.timeout_s",
                   tell_after_s=20):  # setting up a fresh instance takes seconds
        if not _current(cfg):
            write_text_atomic(cfg, DAGSTER_YAML)
        if not (ready.is_file() and ready.read_text() == _ready_stamp()):
            # storages created now are at this Dagster's schema; existing ones are migrated
            _create_and_migrate(migrate=cfg.read_text() != DAGSTER_YAML or (home / "history" / "runs.db").exists())
            write_text_atomic(ready, _ready_stamp())
    return home


def _current(cfg: Path) -> bool:
    """The dagster.yaml is there and is not one an earlier version wrote (the user's own is kept)."""
    try:
        return cfg.read_text() not in EARLIER_YAMLS
    except FileNotFoundError:
        return False


def _create_and_migrate(migrate: bool) -> None:
    """Open the instance (which creates its storages) and, with ``migrate``, bring their schema to
    this Dagster's; what Dagster prints while migrating goes nowhere."""
    import contextlib
    import io

    from dagster import DagsterInstance

    inst = DagsterInstance.get()
    try:
        if migrate:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                inst.upgrade()
    finally:
        inst.dispose()


def instance(paths: Paths | None = None):
    """The persistent instance, set up (above), with the runs whose process is gone marked failed."""
    ensure_dagster_home(paths)
    from dagster import DagsterInstance

    from duel_assets.defs.runs import fail_dead_runs

    inst = DagsterInstance.get()
    for line in fail_dead_runs(inst):
        print(line, file=sys.stderr)
    return inst


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


def interrupted(result) -> bool:
    """The in-process run ended because this process got SIGINT or SIGTERM (Dagster turns both into
    an interrupt of the step, or of the run between steps): the command should stop, not go on."""
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data.error is not None \
                and ev.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError":
            return True
        if ev.is_run_failure and ev.job_failure_data.failure_reason is not None \
                and ev.job_failure_data.failure_reason.value == "UNEXPECTED_TERMINATION":
            return True
    return False


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
