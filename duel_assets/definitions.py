"""The code location: the seven duel assets and their checks, `duel_report` over all partitions,
judge calibration, the sensors (and the one that fails runs whose process is gone), warehouse upkeep,
and the resources.

Loading it reads ``.env`` (the environment wins) and validates chain.toml first: a bad
configuration stops the location from loading with one line per problem, before any sensor or run
can start."""
import dagster as dg

from duel_assets.defs.assets import ALL_ASSETS
from duel_assets.defs.calibration import CALIBRATION_ASSETS
from duel_assets.defs.maintenance import warehouse_maintenance, warehouse_maintenance_schedule
from duel_assets.defs.report import duel_report, report_automation_sensor
from duel_assets.defs.resources import build_resources
from duel_assets.defs.runs import dead_run_sensor
from duel_assets.defs.sensors import ALL_SENSORS
from duel_assets.lib.settings import ConfigError, env


class InvalidConfiguration(Exception):
    """The code location refuses to load: chain.toml (or DUEL_MODE / DUEL_CONFIG) is not valid."""


@dg.definitions
def defs() -> dg.Definitions:
    env.apply_environment()
    try:
        resources = build_resources()
        resources["settings"].config()  # a chain.toml that does not validate stops the location here
    except ConfigError as e:
        lines = "\n".join(f"  {line}" for line in e.errors)
        raise InvalidConfiguration(f"duel_assets configuration is not valid; fix it and reload the code location:\n"
                                   f"{lines}") from None
    # runs execute their steps in the run's own process: a run launched from the UI or a backfill then
    # costs what `duel-assets run` costs, instead of one process start (and code load) per step
    return dg.Definitions(assets=[*ALL_ASSETS, duel_report, *CALIBRATION_ASSETS],
                          sensors=[*ALL_SENSORS, report_automation_sensor, dead_run_sensor], jobs=[warehouse_maintenance],
                          schedules=[warehouse_maintenance_schedule], resources=resources, executor=dg.in_process_executor)
