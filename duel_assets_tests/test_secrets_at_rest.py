"""Secrets never reach a file or an output: URL user info, passwords in DUEL_WAREHOUSE and
DUEL_CALL_CACHE (URL and libpq keyword forms), through every command and file; call data is private."""
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.calls.store_pg import PgCallStore, open_store
from duel_assets.lib.settings import CallsConfig, ConfigError, Endpoint, Paths, call_store_kind, endpoint_id, redact
from duel_assets.lib.settings import env as settings_env
from duel_assets.lib.settings.secrets import hidden_values, parse_conninfo
from duel_assets.lib.settings.show import environment_rows
from duel_assets_tests.conftest import CANARY_KEY, TEST_CHAIN

EXE = Path(sys.executable).parent / "duel-assets"
PASSWORD = "pw-canary-5c1d9e"
URL_KEY = "sk-url-canary-2b7f"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url,expected", [
    ("HTTPS://User:Secret@API.Example.COM:443/v1/", "https://api.example.com/v1"),
    ("http://127.0.0.1:80/v1", "http://127.0.0.1/v1"),
    ("http://127.0.0.1:8765/v1?api_key=abc#x", "http://127.0.0.1:8765/v1"),
    ("https://key-only@llm.chutes.ai/v1", "https://llm.chutes.ai/v1"),
    ("http://[::1]:8000/V1/", "http://[::1]:8000/V1"),
])
def test_an_endpoint_is_named_without_its_credentials_normalised(url, expected):
    assert endpoint_id(url) == expected
    ep = Endpoint.of(url, "", "LLM_BASE_URL")
    assert "@" not in ep.base_url and ep.id == expected and "Secret" not in repr(ep) and "key-only" not in repr(ep)


def test_conninfo_and_urls_are_masked_and_their_secrets_found():
    conninfo = f"host=db port=5432 dbname=duel user=duel password='{PASSWORD} x' sslmode=require"
    assert parse_conninfo(conninfo)["password"] == f"{PASSWORD} x"
    for text in (conninfo, f"postgresql://duel:{PASSWORD}@db/duel", f"ducklake:postgres:{conninfo}",
                 f"postgresql://db/duel?password={PASSWORD}&sslmode=require", f"md:lake?motherduck_token={PASSWORD}"):
        assert PASSWORD not in redact(text) and "***" in redact(text), text
        assert any(PASSWORD in s for s in hidden_values(text)), text
    assert redact("postgresql://duel:secretpw@db/x") == "postgresql://duel:***@db/x"


def test_the_call_store_location_is_postgres_sqlite_or_refused(tmp_path):
    assert call_store_kind(f"postgresql://u:{PASSWORD}@h/db") == call_store_kind(f"host=h dbname=db password={PASSWORD}") == "postgres"
    assert call_store_kind(str(tmp_path / "calls.sqlite")) == "sqlite"
    for bad in (f"mysql://u:{PASSWORD}@h/db", f"host=h password={PASSWORD} nonsense", f"hots=h password={PASSWORD}"):
        with pytest.raises(ConfigError) as e:
            call_store_kind(bad)
        assert "DUEL_CALL_CACHE" in str(e.value) and PASSWORD not in str(e.value)


def test_a_keyword_conninfo_is_never_taken_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for location in (f"host=127.0.0.1 port={closed_port()} dbname=calls user=duel password={PASSWORD}",
                     f"postgresql://duel:{PASSWORD}@127.0.0.1:{closed_port()}/calls"):
        with pytest.raises(ConfigError) as e:
            open_store(location)
        assert "DUEL_CALL_CACHE: cannot connect to PostgreSQL" in str(e.value) and PASSWORD not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the conninfo


def test_call_data_is_private_on_disk(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    assert stat.S_IMODE(paths.home.stat().st_mode) == 0o700 and stat.S_IMODE(paths.cache_dir.stat().st_mode) == 0o700
    CallStore(paths.cache_db).put("k", "king", "m", {"content": "x"}, "http://e/v1")
    for f in paths.cache_dir.glob("llm_calls.sqlite*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    old = tmp_path / "shared" / "old.sqlite"  # a store made before: its mode is narrowed when opened
    old.parent.mkdir()
    old.touch(mode=0o644)
    CallStore(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_passwords_of_the_warehouse_and_the_call_store_are_shown_masked_and_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("DUEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DUEL_WAREHOUSE", f"ducklake:postgres:host=db dbname=lake user=duel password={PASSWORD}")
    monkeypatch.setenv("DUEL_CALL_CACHE", f"host=db dbname=calls user=duel password='{PASSWORD}'")
    rows = {r.key: r.value for r in environment_rows()}
    assert PASSWORD not in repr(rows) and rows["call store"].startswith("PostgreSQL host=db")
    assert "password=***" in rows["warehouse"]
    assert PASSWORD in settings_env.secret_values() and settings_env.scrub(f"failed: {PASSWORD}") == "failed: ***"


def test_basic_auth_from_the_url_is_sent_and_never_written(fresh_standin, tmp_path):
    url = fresh_standin.base_url.replace("http://", f"http://duel:{URL_KEY}@")
    caller = LLMCaller(Endpoint.of(url, "", "LLM_BASE_URL"), CallsConfig(timeout_s=5, retry_budget=1),
                       CallStore(tmp_path / "c.sqlite"))
    ok = CallRequest("king", "standin-generator", [{"role": "user", "content": "basic"}], {})
    echo = CallRequest("king", "standin-auth-echo", [{"role": "user", "content": "basic"}], {})
    (r_ok, r_echo), _ = caller.run([ok, echo])
    assert r_ok.ok and not r_echo.ok and "Incorrect API key provided: Basic ***" in r_echo.error
    import base64

    encoded = base64.b64encode(f"duel:{URL_KEY}".encode()).decode()
    for f in tmp_path.rglob("*"):
        data = f.read_bytes()
        assert URL_KEY.encode() not in data and encoded.encode() not in data, f


def _leaks(root: Path, outputs: list[str]) -> list[str]:
    found = []
    canaries = (PASSWORD, URL_KEY, CANARY_KEY)
    for i, text in enumerate(outputs):
        found += [f"output {i}: {c}" for c in canaries if c in text]
    for f in root.rglob("*"):
        found += [f"file name {f}" for c in canaries if c in f.name]
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f}: {c}" for c in canaries if c.encode() in data]
    return found


@pytest.mark.e2e
def test_canaries_in_every_secret_variable_reach_no_file_and_no_output(fresh_standin, tmp_path):
    work = tmp_path / "work"  # the working directory; DUEL_HOME (./.duel) and DAGSTER_HOME inside it
    work.mkdir()
    (work / "chain.toml").write_text(TEST_CHAIN)
    base = {k: v for k, v in os.environ.items()
            if not k.endswith(("_BASE_URL", "_API_KEY")) and not k.startswith(("DUEL_", "DAGSTER_"))}
    base.update(LLM_BASE_URL=fresh_standin.base_url.replace("http://", f"http://duel:{URL_KEY}@"),
                LLM_API_KEY=CANARY_KEY, DUEL_PROGRESS="0")
    outputs: list[str] = []

    def cli(extra: dict, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(EXE), *args], env={**base, **extra}, cwd=work, capture_output=True, text=True,
                             timeout=300)
        outputs.extend([out.stdout, out.stderr])
        return out

    ok = cli({}, "run", "--partition", "prompts_6_000", "--sample-new")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"LLM endpoint: {fresh_standin.base_url} " in ok.stdout  # the credentials left the URL
    listing = cli({}, "calls")
    assert listing.returncode == 0 and endpoint_id(fresh_standin.base_url) in listing.stdout
    pg_url = {"DUEL_CALL_CACHE": f"postgresql://duel:{PASSWORD}@127.0.0.1:{closed_port()}/calls"}
    pg_keywords = {"DUEL_CALL_CACHE": f"host=127.0.0.1 port={closed_port()} dbname=calls user=duel password={PASSWORD}"}
    lake = {"DUEL_WAREHOUSE": f"ducklake:postgres:host=127.0.0.1 port={closed_port()} dbname=lake user=duel "
                              f"password={PASSWORD}", "DUEL_LAKE_DATA_PATH": str(work / "lake")}
    for extra in (pg_url, pg_keywords, lake):
        shown = cli(extra, "config")
        assert shown.returncode == 0 and "***" in shown.stdout, shown.stderr
        failed = cli(extra, "run", "--partition", "prompts_6_000")
        assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert "DUEL_CALL_CACHE: cannot connect to PostgreSQL" in outputs[-5]  # the keyword form's run
    refused = cli({"DUEL_CALL_CACHE": f"mysql://duel:{PASSWORD}@db/calls"}, "run")
    assert refused.returncode == 2 and "DUEL_CALL_CACHE: got a mysql:// URL" in refused.stderr
    assert (work / ".duel" / "dagster_home").is_dir() and len(list(work.rglob("*"))) > 20  # really searched
    assert _leaks(work, outputs) == []


@pytest.mark.scale
def test_a_postgres_call_store_reached_by_url_or_keywords_holds_no_secret(postgres, fresh_standin):
    db = postgres.database("calls_secrets")
    url = f"postgresql://{db.user}:{PASSWORD}@{db.host}:{db.port}/{db.name}"  # trust auth: the password is not checked
    keywords = f"host={db.host} port={db.port} user={db.user} dbname={db.name} password='{PASSWORD}'"
    endpoint = Endpoint.of(fresh_standin.base_url.replace("http://", f"http://duel:{URL_KEY}@"), CANARY_KEY, "LLM")
    for i, location in enumerate((url, keywords)):
        store = open_store(location)
        assert isinstance(store, PgCallStore)
        caller = LLMCaller(endpoint, CallsConfig(timeout_s=5), store)
        (r,), _ = caller.run([CallRequest("king", "standin-generator", [{"role": "user", "content": f"pg {i}"}], {})])
        assert r.ok
    with store._tx() as con:
        text = repr([con.execute(f"SELECT * FROM {t}").fetchall() for t in ("calls", "leases", "holders", "budget")])
    store.close()
    assert endpoint_id(fresh_standin.base_url) in text
    assert PASSWORD not in text and URL_KEY not in text and CANARY_KEY not in text
