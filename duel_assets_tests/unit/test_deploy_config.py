"""docs/operations.md's "Beyond one machine" configuration is valid Dagster instance config."""
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from duel_assets.defs.instance import DAGSTER_YAML
from duel_assets_tests.conftest import REPO

ROOT = REPO


def validate(folder: Path) -> dict:
    cfg, _ = dagster_instance_config(str(folder))
    return cfg


def test_deploy_dagster_yaml_loads(tmp_path):
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    cfg = validate(tmp_path)
    assert "postgres" in cfg["storage"]
    assert cfg["concurrency"]["runs"]["max_concurrent_runs"] == 16
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert cfg["run_monitoring"]["enabled"] is True and cfg["run_monitoring"]["max_resume_run_attempts"] == 0
    page = (ROOT / "docs" / "operations.md").read_text()
    assert "deploy/dagster.yaml" in page and "## Beyond one machine" in page


def test_the_validation_catches_mistakes(tmp_path):
    doc = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    del doc["storage"]["postgres"]["postgres_db"]["db_name"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DagsterInvalidConfigError, match="db_name"):
        validate(tmp_path)


def test_the_local_instance_yaml_loads(tmp_path):
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML)
    cfg = validate(tmp_path)
    assert cfg["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert cfg["run_monitoring"]["enabled"] is True and cfg["run_monitoring"]["start_timeout_seconds"] > 0
