"""`duel-assets config`: the resolved configuration, each value with where it came from."""
from __future__ import annotations

from duel_assets.lib.settings.preflight import validate_for_work
from duel_assets.lib.settings.show import describe_all


def cmd_config(args) -> int:
    """Reads files and the environment only: no network, no Dagster instance. Checks what `run`
    checks before it starts (the configuration, ``DUEL_MODE``, local paths that must exist)."""
    print(describe_all(validate_for_work()))
    return 0
