"""The Dagster instance a command uses: written, created and migrated once, under a lock; the user's own
dagster.yaml is kept, an earlier version's is brought up to date. (Two commands at once on a fresh
home: test_process_reliability.py.)"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.cli import common
from duel_assets.defs.instance import DAGSTER_YAML, EARLIER_YAMLS
from duel_assets.lib.settings import Paths
from duel_assets.lib.system.locks import LockTimeout


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DUEL_HOME", str(tmp_path / "duel"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("DUEL_CONFIG", str(tmp_path / "chain.toml"))
    (tmp_path / "chain.toml").write_text("[locks]\ntimeout_s = 2\n")
    return tmp_path / "duel" / "dagster_home"


def _heads(dh: Path) -> int:
    with sqlite3.connect(dh / "history" / "runs.db") as con:
        return con.execute("SELECT count(*) FROM alembic_version").fetchone()[0]


def test_a_fresh_home_is_written_created_and_marked_ready(home):
    assert common.ensure_dagster_home(Paths.from_env()) == home
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML
    assert (home / ".duel-instance-ready").read_text() == f"dagster {dg.__version__}\n"
    assert _heads(home) == 1
    with dg.DagsterInstance.from_config(str(home)) as inst:
        assert inst.run_monitoring_enabled and inst.get_runs() == []


def test_an_earlier_yaml_is_updated_and_a_users_own_is_kept(home):
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(EARLIER_YAMLS[0])
    common.ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == DAGSTER_YAML
    own = "telemetry:\n  enabled: false\n# mine\n"
    (home / "dagster.yaml").write_text(own)
    (home / ".duel-instance-ready").write_text("dagster 0.0.1\n")  # as an older Dagster left it
    common.ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == own
    assert (home / ".duel-instance-ready").read_text() == f"dagster {dg.__version__}\n" and _heads(home) == 1


HOLD = """
import sys, time
from duel_assets.lib.system.locks import file_lock
with file_lock(sys.argv[1], 5):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_set_up_waits_for_the_holder_within_locks_timeout_s(home):
    home.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home / ".duel-instance.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match=rf"Dagster instance {home}: .*locks.timeout_s = 2.*held by PID {holder.pid}"):
            common.ensure_dagster_home()
        assert 2 <= time.monotonic() - t0 < 10
    finally:
        holder.kill()
        holder.wait()
    common.ensure_dagster_home()  # the lock is free again: set up
    assert _heads(home) == 1
