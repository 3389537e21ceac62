"""The code location: seven duel assets, their checks, two sensors, judge calibration, and the resources."""
import dagster as dg

from duel_assets.defs.assets import ALL_ASSETS
from duel_assets.defs.calibration import CALIBRATION_ASSETS
from duel_assets.defs.resources import build_resources
from duel_assets.defs.sensors import ALL_SENSORS


@dg.definitions
def defs() -> dg.Definitions:
    # runs execute their steps in the run's own process: a run launched from the UI or a backfill then
    # costs what `duel-assets run` costs, instead of one process start (and code load) per step
    return dg.Definitions(assets=ALL_ASSETS + CALIBRATION_ASSETS, sensors=ALL_SENSORS, resources=build_resources(), executor=dg.in_process_executor)
