"""The code location: seven duel assets, their checks, two sensors, warehouse upkeep, and the resources."""
import dagster as dg

from duel_assets.defs.assets import ALL_ASSETS
from duel_assets.defs.maintenance import warehouse_maintenance, warehouse_maintenance_schedule
from duel_assets.defs.resources import build_resources
from duel_assets.defs.sensors import ALL_SENSORS


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=ALL_ASSETS, sensors=ALL_SENSORS, jobs=[warehouse_maintenance],
                          schedules=[warehouse_maintenance_schedule], resources=build_resources())
