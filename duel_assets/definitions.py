"""The code location: the seven duel assets and their checks, `duel_report` over all partitions,
the sensors, and the resources."""
import dagster as dg

from duel_assets.defs.assets import ALL_ASSETS
from duel_assets.defs.report import duel_report, report_automation_sensor
from duel_assets.defs.resources import build_resources
from duel_assets.defs.sensors import ALL_SENSORS


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[*ALL_ASSETS, duel_report], sensors=[*ALL_SENSORS, report_automation_sensor],
                          resources=build_resources())
