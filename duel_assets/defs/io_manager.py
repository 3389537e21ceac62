"""The DuckDB IO manager: Dagster's DbIOManager over the `warehouse` resource.

Tables follow their declared schemas (``duel_assets.lib.tables``): an empty partition still yields a
typed table, columns a newer version declares are added, inserts are by name. A partition's
replace (DELETE of its rows, then INSERT) is one transaction, re-run on a DuckLake conflict; the
number of re-runs is in the materialization's metadata (`warehouse_conflict_retries`).
"""
from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbClient, DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient

from duel_assets.defs.warehouse import WarehouseResource
from duel_assets.lib.tables import SCHEMAS
from duel_assets.lib.warehouse import Warehouse


class WarehouseClient(DbClient):
    """Connections come from the Warehouse (its lock, its dialect); the partition's DELETE is part
    of the handler's transaction, not a statement of its own."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    @contextmanager
    def connect(self, context, table_slice: TableSlice):  # type: ignore[override]
        with self.warehouse.connect() as con:
            yield con

    def delete_table_slice(self, context, table_slice: TableSlice, connection) -> None:  # type: ignore[override]
        pass  # done inside WarehousePandasHandler.handle_output, in the same transaction as the insert

    def ensure_schema_exists(self, context, table_slice: TableSlice, connection) -> None:  # type: ignore[override]
        pass  # Warehouse.ensure_table creates the schema with the table

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        return DuckDbClient.get_select_statement(table_slice)


def _slice_keys(table_slice: TableSlice) -> tuple[str | None, list[str] | None]:
    dims = table_slice.partition_dimensions or []
    if not dims:
        return None, None
    if len(dims) > 1 or not isinstance(dims[0].partitions, (list, tuple)):
        raise ValueError(f"{table_slice.table}: only one dimension of partition keys is supported")
    return dims[0].partition_expr, list(dims[0].partitions)


class WarehousePandasHandler(DbTypeHandler[pd.DataFrame]):
    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def handle_output(self, context, table_slice: TableSlice, obj: pd.DataFrame, connection):
        column, keys = _slice_keys(table_slice)
        schema = SCHEMAS.get(table_slice.table)
        retries = self.warehouse.replace_partition(connection, table_slice.table, obj, schema, column, keys)
        declared = schema or [(c, str(t)) for c, t in obj.dtypes.items()]
        return {
            "dagster/partition_row_count" if context.has_partition_key else "dagster/row_count": len(obj),
            "dataframe_columns": dg.MetadataValue.table_schema(
                dg.TableSchema(columns=[dg.TableColumn(name=c, type=t) for c, t in declared])),
            "warehouse_dialect": self.warehouse.dialect,
            "warehouse_conflict_retries": retries,
        }

    def load_input(self, context, table_slice: TableSlice, connection) -> pd.DataFrame:
        if table_slice.partition_dimensions and not context.asset_partition_keys:
            return pd.DataFrame(columns=[c for c, _ in SCHEMAS.get(table_slice.table, [])])
        return connection.execute(DuckDbClient.get_select_statement(table_slice)).fetchdf()

    @property
    def supported_types(self):
        return [pd.DataFrame]


class DuelDuckDBIOManager(dg.ConfigurableIOManagerFactory):
    """Stores each asset as table `duel.<asset>` in the warehouse, one partition per prompt file."""

    warehouse: WarehouseResource

    def create_io_manager(self, context) -> DbIOManager:
        wh = self.warehouse.get()
        return DbIOManager(
            db_client=WarehouseClient(wh),
            database=wh.label,
            schema="duel",
            type_handlers=[WarehousePandasHandler(wh)],
            default_load_type=pd.DataFrame,
            io_manager_name="DuelDuckDBIOManager",
        )
