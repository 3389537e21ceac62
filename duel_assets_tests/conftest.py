"""Shared fixtures: a real stand-in over HTTP, a temp DUEL_HOME, a real Dagster instance.

The tests are tiered by folder, and each test is marked with its folder's name: ``unit/`` (no
server, no instance, no subprocess; `make test-unit`), ``integration/`` (the stand-in over HTTP, a
Dagster instance, subprocesses), ``e2e/`` (the whole graph, the command line), and the heavy ones
`make test` leaves out: ``reliability/``, ``ui/``, ``scale/`` and ``real/`` (a real model server)
(each with its own make target)."""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from duel_assets.devtools.standin import StandinServer

# the session fixture `postgres` (a throw-away PostgreSQL cluster) for any test that needs one
pytest_plugins = ["duel_assets_tests.postgres"]

TESTS = Path(__file__).resolve().parent
EXE = Path(sys.executable).parent / "duel-assets"  # the command line, as installed beside this interpreter
REPO = TESTS.parent  # the checkout
FIXTURES = TESTS / "fixtures"  # the test data shipped with the repository
SHARED_SAMPLES = REPO.parent / "shared" / "samples"  # real third-party rows beside the checkout, when present
# columns two runs of the same partition may legitimately differ in: whether a call came from the
# cache, how many tries it took, and how much of its prompt the provider had cached (the provider's
# cache state depends on what it saw before)
VOLATILE = {"cached", "attempts", "cached_tokens", "usage"}
CANARY_KEY = "sk-canary-7f3a9c1e-do-not-log"

TEST_CHAIN = """
[sampling]
turns_per_file = 6
seed = 3

[generation]
model = "standin-generator"
max_tokens = 256

[judges]
models = ["standin-judge-1"]

[calls]
concurrency = 8
retry_budget = 4
backoff_base_s = 0.01
backoff_max_s = 0.2
timeout_s = 5

[gate]
resamples = 500
"""


TIERS = ("unit", "integration", "e2e", "reliability", "ui", "scale", "real")
# per-test time limits (pytest-timeout) beyond the default of pyproject.toml, by tier
TIMEOUT_S = {"unit": 60, "reliability": 1800, "ui": 1800, "scale": 1800, "real": 1800}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by these markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of the tier folders {', '.join(TIERS)}")
        item.add_marker(tier)
        if tier in TIMEOUT_S and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUT_S[tier]))


def shared_sample(*parts: str) -> Path:
    """A real third-party sample file from ``../shared/samples`` beside the checkout. Those files are
    not shipped with the repository (see their SOURCES.md for where each comes from): a test that reads
    one skips, saying so, where the folder is absent."""
    p = SHARED_SAMPLES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs the real {'/'.join(parts)} from ../shared/samples beside the checkout: third-party "
                    f"rows the repository does not ship, absent here ({p})")
    return p


@pytest.fixture(scope="session")
def standin():
    with StandinServer(retry_after_s=0.05, timeout_sleep_s=3) as srv:
        yield srv


def standin_post(srv: StandinServer, path: str, payload: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def fresh_standin(standin):
    standin_post(standin, "/_standin/reset", {})
    standin.state.fault_rate = 0.0
    standin.state.latency_ms = 0.0
    standin.state.set_limits(0, 0)
    yield standin
    standin_post(standin, "/_standin/reset", {})
    standin.state.fault_rate = 0.0


@pytest.fixture
def duel_env(tmp_path, monkeypatch, fresh_standin):
    """DUEL_HOME, DAGSTER_HOME and DUEL_CONFIG in tmp; the LLM endpoint is the stand-in."""
    home = tmp_path / "duel"
    home.mkdir()
    (tmp_path / "dagster_home").mkdir()
    cfg = tmp_path / "chain.toml"
    cfg.write_text(TEST_CHAIN)
    for var in ("CHUTES_BASE_URL", "CHUTES_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "DUEL_MODE", "DUEL_PROGRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DUEL_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("DUEL_CONFIG", str(cfg))
    monkeypatch.setenv("LLM_BASE_URL", fresh_standin.base_url)
    monkeypatch.setenv("LLM_API_KEY", CANARY_KEY)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))
    return {"home": home, "config": cfg, "tmp": tmp_path, "standin": fresh_standin}


@pytest.fixture
def instance(duel_env):
    with dg.instance_for_test(temp_dir=str(duel_env["tmp"] / "dagster_home")) as inst:
        yield inst


def materialize(instance, key: str, selection=None, raise_on_error: bool = True):
    from duel_assets.defs.assets import ALL_ASSETS
    from duel_assets.defs.partitions import prompt_files
    from duel_assets.defs.resources import build_resources

    if key not in instance.get_dynamic_partitions(prompt_files.name):
        instance.add_dynamic_partitions(prompt_files.name, [key])
    return dg.materialize(ALL_ASSETS, partition_key=key, instance=instance, resources=build_resources(),
                          selection=selection, raise_on_error=raise_on_error)


def materialize_report(instance, raise_on_error: bool = True):
    """`duel_report` over every registered partition (what the automation sensor and `duel-assets run` do)."""
    from duel_assets.defs.report import duel_report
    from duel_assets.defs.resources import build_resources

    return dg.materialize([duel_report], instance=instance, resources=build_resources(), raise_on_error=raise_on_error)


def query(home: Path, sql: str, params=None) -> list[tuple]:
    """Rows of ``sql`` on the warehouse the runs wrote (``$DUEL_WAREHOUSE``, else ``<home>/warehouse.duckdb``),
    through the same Warehouse handle and lock as the IO manager: never races a run's writes."""
    from duel_assets.lib.warehouse import Warehouse

    return Warehouse.from_env(home).query(sql, params)


def table_rows(value) -> list[dict]:
    """The rows of a table metadata value (``metadata(...)[name]``) as plain dicts."""
    assert isinstance(value, dg.TableMetadataValue), f"not a table: {value!r}"
    return [dict(r.data) for r in value.records]


def metadata(result, asset: str) -> dict:
    mats = [e.materialization for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == dg.AssetKey(asset)]
    assert mats, f"{asset} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}
