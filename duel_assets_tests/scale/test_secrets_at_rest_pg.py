"""A PostgreSQL call store reached by URL or by libpq keywords holds no secret."""

from duel_assets.lib.calls import CallRequest, LLMCaller
from duel_assets.lib.calls.store_pg import PgCallStore, open_store
from duel_assets.lib.settings import CallsConfig, Endpoint, endpoint_id
from duel_assets_tests.conftest import CANARY_KEY
from duel_assets_tests.integration.test_secrets_at_rest import PASSWORD, URL_KEY


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
