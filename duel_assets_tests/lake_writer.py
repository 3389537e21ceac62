"""One writer process of the concurrent-write test: replaces its own partition of one table
``rounds`` times through Warehouse.replace_partition and prints what happened as JSON.

    python -m duel_assets_tests.lake_writer <partition> <rounds> <go-file>

It waits until <go-file> exists, so that every writer starts at the same moment."""
import json
import os
import sys
import time

import pandas as pd

from duel_assets.lib.warehouse import Warehouse, WarehouseError

TABLE = "concurrent_writes"
SCHEMA = [("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("round", "INTEGER"), ("payload", "VARCHAR")]


def rows(key: str, rnd: int) -> pd.DataFrame:
    return pd.DataFrame([{"prompt_file": key, "turn_id": f"{key}-{i}", "round": rnd, "payload": "x" * 200}
                         for i in range(50)])


def main(key: str, rounds: int, go: str) -> int:
    wh = Warehouse.from_env()
    while not os.path.exists(go):
        time.sleep(0.01)
    retries, failures = 0, []
    for rnd in range(rounds):
        try:
            with wh.connect() as con:
                retries += wh.replace_partition(con, TABLE, rows(key, rnd), SCHEMA, "prompt_file", [key])
        except WarehouseError as e:
            failures.append(str(e))
    print(json.dumps({"key": key, "retries": retries, "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
