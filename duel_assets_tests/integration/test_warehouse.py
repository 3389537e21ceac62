"""The Warehouse handle: bounded lock waits, one-transaction partition replaces, DuckLake conflicts
re-run, extensions from the wheels, clear errors. Runs without PostgreSQL (a DuckLake whose
catalog is a local DuckDB file); the PostgreSQL catalog is exercised by `make test-scale`."""
from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import duckdb
import pandas as pd
import pytest

from duel_assets.lib.system.locks import LockTimeout, holder
from duel_assets.lib.warehouse import Warehouse, WarehouseError, parse_target, redact
from duel_assets_tests.conftest import FIXTURES

SCHEMA = [("prompt_file", "VARCHAR"), ("turn_id", "VARCHAR"), ("n", "INTEGER")]


def rows(key: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_file": [key] * n, "turn_id": [f"{key}-{i}" for i in range(n)], "n": list(range(n))})


HOLDER = """
import sys, time
from duel_assets.lib.warehouse import Warehouse
with Warehouse(sys.argv[1]).connect():
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def stopped_holder(tmp_path):
    """A process that holds the warehouse lock, then is stopped with SIGSTOP."""
    db = tmp_path / "warehouse.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        os.kill(proc.pid, signal.SIGSTOP)
        yield db, proc.pid
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_a_writer_behind_a_stopped_holder_fails_in_time_naming_it(stopped_holder):
    db, pid = stopped_holder
    time.sleep(1.0)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        with Warehouse(db, lock_timeout_s=2).connect():
            pass
    waited = time.monotonic() - t0
    assert 2.0 <= waited < 4.0
    msg = str(err.value)
    assert f"held by PID {pid} (-c {db}) since " in msg and "warehouse.lock_timeout_s = 2" in msg and "\n" not in msg
    held_s = float(msg.split(f"held by PID {pid} (-c {db}) since ")[1].split(" (")[1].split(" s)")[0])
    assert held_s >= 3  # it has held the lock since before we started waiting
    assert holder(f"{db}.lock")["pid"] == pid


def test_a_run_behind_a_stopped_holder_fails_with_the_same_message(stopped_holder, duel_env, instance):
    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.io_manager import DuelDuckDBIOManager
    from duel_assets.defs.resources import build_resources
    from duel_assets.defs.warehouse import WarehouseResource

    db, pid = stopped_holder
    wh = WarehouseResource(target=str(db), lock_timeout_s=1.5)
    resources = {**build_resources(), "warehouse": wh, "io_manager": DuelDuckDBIOManager(warehouse=wh)}
    instance.add_dynamic_partitions("prompt_files", ["prompts_12_000"])
    t0 = time.monotonic()
    res = dg.materialize(ALL_ASSETS, partition_key="prompts_12_000", instance=instance, resources=resources,
                         selection=["sampled_turns"], raise_on_error=False)
    assert not res.success and time.monotonic() - t0 < 60
    failure = next(e for e in res.all_events if e.is_step_failure).event_specific_data.error
    text = failure.message + "".join(c.message for c in [failure.cause] if c)
    assert f"held by PID {pid}" in text


def test_a_free_lock_is_taken_and_records_its_holder(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=0.5)
    with wh.connect() as con:
        assert holder(f"{tmp_path / 'w.duckdb'}.lock")["pid"] == os.getpid()
        con.execute("SELECT 1")
    with wh.connect():  # released on exit: taken again at once
        pass


def test_partition_replace_is_one_transaction(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.connect() as con:
        assert wh.replace_partition(con, "t", rows("a", 3), SCHEMA, "prompt_file", ["a"]) == 0
        wh.replace_partition(con, "t", rows("b", 2), SCHEMA, "prompt_file", ["b"])
        bad = rows("a", 5).astype({"n": str})
        bad.loc[4, "n"] = "not a number"  # the INSERT fails after the DELETE ran
        with pytest.raises(duckdb.ConversionException):
            wh.replace_partition(con, "t", bad, SCHEMA, "prompt_file", ["a"])
    assert wh.query("SELECT prompt_file, count(*) FROM duel.t GROUP BY 1 ORDER BY 1") == [("a", 3), ("b", 2)]
    with wh.connect() as con:
        wh.replace_partition(con, "t", rows("a", 5), SCHEMA, "prompt_file", ["a"])
        wh.replace_partition(con, "t", rows("b", 0), SCHEMA, "prompt_file", ["b"])  # empty: the rows go
    assert wh.query("SELECT prompt_file, count(*) FROM duel.t GROUP BY 1 ORDER BY 1") == [("a", 5)]
    assert list(wh.read_partition("t", "a")["n"]) == [0, 1, 2, 3, 4]


def _lake(tmp_path) -> Warehouse:
    return Warehouse(f"ducklake:{tmp_path / 'catalog.ducklake'}", data_path=str(tmp_path / "data"))


def _conflicting_work(con, other_writes: int):
    """A partition write during which another transaction commits a delete to the same table
    (``other_writes`` times), as another worker's partition replace would."""
    for k in ("a", "b"):
        con.execute(f"INSERT INTO duel.t VALUES ('{k}', '{k}-old', 0)")
    seen = []

    def work(c):
        c.execute("DELETE FROM duel.t WHERE prompt_file = 'a'")
        if len(seen) < other_writes:
            other = c.cursor()
            other.execute("BEGIN")
            other.execute("DELETE FROM duel_lake.duel.t WHERE prompt_file = 'b'")
            other.execute("INSERT INTO duel_lake.duel.t VALUES ('b', 'b-0', ?)", [len(seen)])
            other.execute("COMMIT")
            other.close()
        seen.append(1)
        c.execute("INSERT INTO duel.t VALUES ('a', 'a-0', 7)")
    return work, seen


def test_a_ducklake_conflict_reruns_the_whole_partition_write(tmp_path):
    wh = _lake(tmp_path)
    with wh.connect() as con:
        wh.ensure_table(con, "t", SCHEMA)
        work, seen = _conflicting_work(con, other_writes=2)
        done = wh.in_transaction(con, work, "writing t")
        assert done.retries == 2 and len(seen) == 3
        assert con.execute("SELECT * FROM duel.t ORDER BY 1").fetchall() == [("a", "a-0", 7), ("b", "b-0", 1)]


def test_conflict_retries_are_bounded(tmp_path):
    wh = _lake(tmp_path)
    wh.max_conflict_retries = 1
    with wh.connect() as con:
        wh.ensure_table(con, "t", SCHEMA)
        work, seen = _conflicting_work(con, other_writes=5)
        with pytest.raises(WarehouseError, match=r"writing t: still conflicting with other writers after 2 attempts"):
            wh.in_transaction(con, work, "writing t")
        assert len(seen) == 2
        # nothing half-written: partition a keeps its old row
        assert con.execute("SELECT turn_id FROM duel.t WHERE prompt_file = 'a'").fetchall() == [("a-old",)]


def test_ducklake_extensions_come_from_the_wheels(tmp_path, monkeypatch):
    monkeypatch.setenv("DUEL_DUCKDB_EXTENSION_DIR", str(tmp_path / "ext"))
    wh = _lake(tmp_path)
    with wh.connect() as con:
        got = dict(con.execute("SELECT extension_name, install_mode FROM duckdb_extensions() WHERE loaded "
                               "AND extension_name = 'ducklake'").fetchall())
        assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)
    assert got == {"ducklake": "CUSTOM_PATH"}  # installed from a local file, not a repository
    assert any((tmp_path / "ext").rglob("ducklake.duckdb_extension"))


def test_ducklake_io_manager_round_trip_and_maintenance(tmp_path, duel_env, instance, monkeypatch):
    from duel_assets_tests.conftest import materialize, metadata, query

    monkeypatch.setenv("DUEL_WAREHOUSE", f"ducklake:{tmp_path / 'catalog.ducklake'}")
    res = materialize(instance, "prompts_12_000", selection=["sampled_turns", "pr_records"])
    assert metadata(res, "sampled_turns")["warehouse_dialect"] == "ducklake"
    assert metadata(res, "sampled_turns")["warehouse_conflict_retries"] == 0
    first = query(duel_env["home"], "SELECT turn_id FROM duel.sampled_turns ORDER BY 1")
    assert len(first) == 6
    for _ in range(3):  # re-materializing replaces: the same rows, more snapshots and files
        materialize(instance, "prompts_12_000", selection=["sampled_turns"])
    assert query(duel_env["home"], "SELECT turn_id FROM duel.sampled_turns ORDER BY 1") == first
    assert not (duel_env["home"] / "warehouse.duckdb").exists()  # nothing went to the local file
    from duel_assets.definitions import defs

    job = defs().get_job_def("warehouse_maintenance")
    out = job.execute_in_process(instance=instance, run_config={"ops": {"maintain_warehouse": {"config": {"keep_hours": 0}}}})
    assert out.success
    md = {k: v.value for k, v in next(e for e in out.all_events if e.event_type_value == "STEP_OUTPUT")
          .event_specific_data.metadata.items()}
    assert md["dialect"] == "ducklake" and md["snapshots_expired"] >= 3 and md["snapshots_after"] < md["snapshots_before"]
    assert query(duel_env["home"], "SELECT turn_id FROM duel.sampled_turns ORDER BY 1") == first


def test_a_duckdb_2_warehouse_file_gets_a_one_line_error(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    db.write_bytes(gzip.decompress((FIXTURES / "warehouse_duckdb2.duckdb.gz").read_bytes()))  # written by duckdb 2.0.0
    with pytest.raises(WarehouseError) as err:
        Warehouse(db).query("SELECT 1")
    msg = str(err.value)
    assert "\n" not in msg and str(db) in msg and "newer DuckDB" in msg and "Moving an existing warehouse" in msg


def test_targets_and_their_labels_never_show_secrets():
    t = parse_target("ducklake:postgres:host=db port=5432 user=duel password=s3cret dbname=lake", "/mnt/lake")
    assert t.dialect == "ducklake" and t.catalog_is_postgres and t.data_path == "/mnt/lake/" and t.lock_file is None
    assert "s3cret" not in t.label and "password=***" in t.label
    assert redact("postgresql+psycopg2://duel:s3cret@db:5432/x") == "postgresql+psycopg2://duel:***@db:5432/x"
    assert parse_target("md:duel?motherduck_token=abc").label == "md:duel?motherduck_token=***"
    assert parse_target("/tmp/w.duckdb").lock_file == "/tmp/w.duckdb"
    with pytest.raises(WarehouseError, match="DUEL_LAKE_DATA_PATH is not set"):
        parse_target("ducklake:postgres:host=db dbname=lake")
    with pytest.raises(WarehouseError, match="the DuckLake catalog must be postgres"):
        parse_target("ducklake:sqlite:x.db")
