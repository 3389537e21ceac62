"""The DuckDB IO manager: dagster-duckdb-pandas with typed tables and by-name inserts.

The stock handler inserts by position and creates no table for an empty DataFrame; this one
creates each table from its declared schema (``duel_assets.lib.tables``), adds columns a newer
version declares, and inserts by name. Partition replacement (DELETE of the partition's rows,
then INSERT) is the base DbIOManager's.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from duel_assets.lib.locks import warehouse_lock
from duel_assets.lib.tables import SCHEMAS


class DeclaredSchemaPandasHandler(DuckDBPandasTypeHandler):
    def handle_output(self, context, table_slice: TableSlice, obj: pd.DataFrame, connection):
        schema = SCHEMAS.get(table_slice.table)
        if schema is None:
            return super().handle_output(context, table_slice, obj, connection)
        tbl = f'"{table_slice.schema}"."{table_slice.table}"'
        cols_sql = ", ".join(f'"{c}" {t}' for c, t in schema)
        connection.execute(f"CREATE TABLE IF NOT EXISTS {tbl} ({cols_sql})")
        have = {r[0] for r in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [table_slice.schema, table_slice.table]).fetchall()}
        for c, t in schema:
            if c not in have:
                connection.execute(f'ALTER TABLE {tbl} ADD COLUMN "{c}" {t}')
        if len(obj):
            connection.register("_duel_out", obj)
            try:
                select = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in schema if c in obj.columns)
                connection.execute(f"INSERT INTO {tbl} BY NAME SELECT {select} FROM _duel_out")
            finally:
                connection.unregister("_duel_out")
        return {
            "dagster/partition_row_count" if context.has_partition_key else "dagster/row_count": len(obj),
            "dataframe_columns": MetadataValue.table_schema(
                TableSchema(columns=[TableColumn(name=c, type=t) for c, t in schema])),
        }

    def load_input(self, context, table_slice: TableSlice, connection) -> pd.DataFrame:
        if table_slice.partition_dimensions and not context.asset_partition_keys:
            return pd.DataFrame(columns=[c for c, _ in SCHEMAS.get(table_slice.table, [])])
        return super().load_input(context, table_slice, connection)


class LockedDuckDbClient(DuckDbClient):
    """Every connection holds the warehouse's inter-process lock (see duel_assets.lib.locks)."""

    @staticmethod
    @contextmanager
    def connect(context, table_slice):
        with warehouse_lock(context.resource_config["database"]):
            with DuckDbClient.connect(context, table_slice) as conn:
                yield conn


class DuelDuckDBIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager whose tables follow the declared schemas and whose connections queue
    on an inter-process lock instead of failing on DuckDB's single-writer lock."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [DeclaredSchemaPandasHandler()]

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=LockedDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuelDuckDBIOManager",
        )
