"""`duel-assets config`: the resolved configuration, each value with where it came from."""
from __future__ import annotations

from duel_assets.lib.settings import load_config
from duel_assets.lib.settings.show import describe_all


def cmd_config(args) -> int:
    """Reads files and the environment only: no network, no Dagster instance."""
    print(describe_all(load_config()))
    return 0
