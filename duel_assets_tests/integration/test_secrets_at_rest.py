"""Secrets never reach a file or an output: URL user info, passwords in DUEL_WAREHOUSE and
DUEL_CALL_CACHE (URL and libpq keyword forms), through every command and file; call data is private."""
import stat

import pytest

from duel_assets.devtools.ports import free_port
from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.calls.store_pg import open_store
from duel_assets.lib.settings import CallsConfig, ConfigError, Endpoint, Paths, call_store_kind, endpoint_id, redact
from duel_assets.lib.settings import env as settings_env
from duel_assets.lib.settings.secrets import hidden_values, parse_conninfo
from duel_assets.lib.settings.show import environment_rows

PASSWORD = "pw-canary-5c1d9e"
URL_KEY = "sk-url-canary-2b7f"



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
    for location in (f"host=127.0.0.1 port={free_port()} dbname=calls user=duel password={PASSWORD}",
                     f"postgresql://duel:{PASSWORD}@127.0.0.1:{free_port()}/calls"):
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


