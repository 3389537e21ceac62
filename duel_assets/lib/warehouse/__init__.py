"""The warehouse: where the seven tables live (local DuckDB file, DuckLake, MotherDuck)."""
from .connect import LAKE_ALIAS
from .core import MAX_CONFLICT_RETRIES, SCHEMA, Warehouse, is_conflict
from .target import DUCKLAKE, LOCAL, MOTHERDUCK, Target, WarehouseError, parse_target, redact, target_from_env

__all__ = ["Warehouse", "WarehouseError", "Target", "parse_target", "target_from_env", "redact", "is_conflict",
           "SCHEMA", "LAKE_ALIAS", "MAX_CONFLICT_RETRIES", "LOCAL", "DUCKLAKE", "MOTHERDUCK"]
