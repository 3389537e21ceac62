"""`warehouse_maintenance`: keep a DuckLake small (merge files, expire snapshots, delete unused files)."""
import dagster as dg

from duel_assets.defs.warehouse import WarehouseResource


class MaintenanceConfig(dg.Config):
    keep_hours: float = 24.0  # snapshots (time travel) younger than this are kept, with the files they need


@dg.op(out=dg.Out(dg.Nothing),
       description="Creates missing tables; on a DuckLake merges adjacent small files, expires snapshots older than "
                   "keep_hours and deletes the data files no snapshot needs; on a local file, CHECKPOINT.")
def maintain_warehouse(context: dg.OpExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource):
    wh = warehouse.get()
    retries = wh.ensure_tables()
    done = wh.maintain(keep_hours=config.keep_hours)
    context.log.info(f"warehouse {wh.label}: {done}")
    return dg.Output(None, metadata={"warehouse": wh.label, "create_conflict_retries": retries, **done})


@dg.job(description="Upkeep of the warehouse; run nightly by warehouse_maintenance_schedule.")
def warehouse_maintenance():
    maintain_warehouse()


warehouse_maintenance_schedule = dg.ScheduleDefinition(
    name="warehouse_maintenance_schedule", job=warehouse_maintenance, cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly warehouse upkeep (DuckLake snapshot expiry and file clean-up).",
)
