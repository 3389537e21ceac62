"""The call store in PostgreSQL (DUEL_CALL_CACHE=postgresql://...) keeps the SQLite store's
guarantees for many workers: a completed call is never paid twice, failures are never stored, a
body in flight in one worker is not sent by another, and the concurrency bound holds for all."""
import threading

import pytest

from duel_assets.lib.calls import CallRequest, LLMCaller
from duel_assets.lib.calls.store_pg import PgCallStore, open_store
from duel_assets.lib.settings import CallsConfig, Endpoint
from duel_assets_tests.conftest import standin_post


@pytest.fixture
def dsn(postgres, request):
    db = postgres.database(f"calls_{request.node.name[:40].lower()}")
    url = db.url("postgresql")
    store = PgCallStore(url)
    with store._tx() as con:
        con.execute("TRUNCATE calls, leases, holders, budget, downgrades, spend")
    store.close()
    return url


def _caller(srv, url, **cfg) -> LLMCaller:
    return LLMCaller(Endpoint(srv.base_url, "k", "LLM"), CallsConfig(timeout_s=5, backoff_base_s=0.01, **cfg), open_store(url))


def test_workers_sharing_one_postgres_store_pay_each_body_once(fresh_standin, dsn):
    fresh_standin.state.latency_ms = 150
    reqs = [CallRequest("judge", "standin-judge-1", [{"role": "user", "content": f"shared {i}"}], {}) for i in range(12)]
    out = []

    def worker():
        out.append(_caller(fresh_standin, dsn, concurrency=4).run(reqs))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for results, _ in out for r in results)
    stats = fresh_standin.state.stats()
    assert stats["answers"] == 12 and stats["repeats"] == 0 and stats["max_in_flight"] <= 4, stats
    # a fourth worker, later: everything from the store, nothing sent
    n = stats["requests"]
    (results, st) = _caller(fresh_standin, dsn, concurrency=4).run(reqs)
    assert st.cache_hits == 12 and fresh_standin.state.stats()["requests"] == n


def test_failures_are_never_stored_and_a_store_is_insert_if_absent(fresh_standin, dsn):
    bad = CallRequest("king", "standin-always-500", [{"role": "user", "content": "x"}], {})
    (r,), _ = _caller(fresh_standin, dsn, retry_budget=2).run([bad])
    store = PgCallStore(dsn)
    assert not r.ok and store.get(bad.key) is None and store.count() == 0
    assert store.put("k1", "king", "m", {"content": "first"}) and not store.put("k1", "king", "m", {"content": "second"})
    assert store.get("k1") == {"content": "first"} and store.get_many(["k1", "nope"]) == {"k1": {"content": "first"}}
    store.close()


def test_a_refusal_learnt_by_two_workers_at_once_is_stored_once_and_the_next_starts_downgraded(fresh_standin, dsn):
    standin_post(fresh_standin, "/_standin/modes", {"modes": ["refuse-stream"]})
    out = []

    def worker(tag):
        reqs = [CallRequest("king", "standin-generator", [{"role": "user", "content": f"{tag} {i}"}], {}) for i in range(6)]
        out.append(_caller(fresh_standin, dsn, concurrency=4).run(reqs))

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for results, _ in out for r in results)
    assert sum(st.downgrades["stream"] for _, st in out) == 1  # both learnt it; one stored (and counted) it
    store = PgCallStore(dsn)
    assert store.downgrades(Endpoint(fresh_standin.base_url, "k", "LLM").id).of("standin-generator") == {"stream": "off"}
    store.close()
    n = len(fresh_standin.state.log)
    (r,), st = _caller(fresh_standin, dsn).run([CallRequest("king", "standin-generator", [{"role": "user", "content": "c"}], {})])
    assert r.ok and st.downgrades == {} and not [e for e in fresh_standin.state.log[n:] if e.get("refused") or e["stream"]]


def test_a_worker_starting_while_another_claims_takes_no_table_lock(postgres, dsn):
    """A run's store opens while another worker's claim transaction has read ``leases``: it opens at
    once and the claim goes on (no DDL on a current schema — ``ALTER TABLE ... IF NOT EXISTS`` would
    wait for an exclusive lock, and PostgreSQL would end one of the two as a deadlock)."""
    import psycopg2

    busy = psycopg2.connect(dsn)
    try:
        cur = busy.cursor()
        cur.execute("SELECT count(*) FROM leases")  # a claim's first read: its lock held until commit
        opened: list[PgCallStore] = []
        t = threading.Thread(target=lambda: opened.append(PgCallStore(dsn)), daemon=True)
        t.start()
        t.join(timeout=15)
        assert not t.is_alive() and opened, "opening the store waited on a worker's transaction"
        cur.execute("SELECT count(*) FROM calls")  # the claim's second read still goes through
        assert cur.fetchone() == (0,)
        busy.commit()
        opened[0].close()
    finally:
        busy.rollback()
        busy.close()


def test_a_store_missing_a_column_is_brought_up_to_date(postgres, dsn):
    import psycopg2

    con = psycopg2.connect(dsn)
    with con, con.cursor() as cur:
        cur.execute("ALTER TABLE leases DROP COLUMN usd")
        cur.execute("DROP INDEX calls_endpoint")
    con.close()
    store = PgCallStore(dsn)
    with store._read() as ex:
        cols = {c for (c,) in ex.execute("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'leases'").fetchall()}
        idx = {i for (i,) in ex.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'calls'").fetchall()}
    store.close()
    assert "usd" in cols and "calls_endpoint" in idx


def test_a_store_write_that_postgresql_ends_as_a_deadlock_is_made_again(postgres, dsn):
    """A real deadlock: another transaction holds the spend row and then inserts the call this
    store is storing. PostgreSQL rolls one of them back; the store's write is made again and
    neither the call nor its cost is lost or counted twice."""
    import time

    import psycopg2

    store = PgCallStore(dsn)
    store.put("seed", "king", "m", {"content": "s"}, usd=1.0)  # the spend row exists
    other = psycopg2.connect(dsn)
    outcome: dict = {}
    try:
        cur = other.cursor()
        cur.execute("UPDATE spend SET usd = usd + 10")  # holds the spend row

        def write():
            try:
                outcome["stored"] = store.put("k", "king", "m", {"content": "mine"}, usd=2.0)
            except Exception as e:  # the test reports what the store raised
                outcome["error"] = repr(e)

        t = threading.Thread(target=write, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while not _waiting_on_a_lock(dsn):  # the store has inserted "k" and waits for the spend row
            assert time.monotonic() < deadline, "the store's write never waited for the spend row"
            time.sleep(0.05)
        deadlocked = False
        try:
            cur.execute("INSERT INTO calls (key, role, model, created, response) VALUES ('k', 'king', 'm', 0, "
                        "'{\"content\": \"theirs\"}') ON CONFLICT (key) DO NOTHING")  # waits for the store's "k"
            other.commit()
            theirs = cur.rowcount == 1
        except psycopg2.errors.DeadlockDetected:  # PostgreSQL chose this side instead
            other.rollback()
            theirs, deadlocked = False, True
        t.join(timeout=30)
    finally:
        other.close()
    assert "error" not in outcome and not t.is_alive(), outcome
    assert deadlocked or store.retries == 1  # there was a deadlock, and the store's side was made again
    assert outcome["stored"] is not theirs  # exactly one of the two stored "k"
    got = store.get("k")
    with store._read() as ex:
        usd = ex.execute("SELECT usd FROM spend").fetchone()[0]
    store.close()
    assert got == ({"content": "theirs"} if theirs else {"content": "mine"})
    assert usd == 1.0 + (10.0 if theirs else 0.0) + (2.0 if outcome["stored"] else 0.0)


def _waiting_on_a_lock(dsn: str) -> bool:
    """Whether a session of this database waits for a lock (asked on a connection of its own: a
    transaction sees one snapshot of ``pg_stat_activity``)."""
    import psycopg2

    con = psycopg2.connect(dsn)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            return cur.fetchone()[0] > 0
    finally:
        con.close()
