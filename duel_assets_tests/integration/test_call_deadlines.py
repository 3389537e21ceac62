"""Slow, silent and refusing endpoints over real HTTP: a whole reply slower than the timeout is read
on and paid once, a black hole fails within the call's deadline, a refusal is shown in the
provider's words, and a lease outlives a reply longer than its time to live."""
import socket
import threading
import time

import pytest

from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
from duel_assets.lib.settings import CallsConfig, Endpoint


class BlackHole:
    """A server that accepts connections, reads what is sent and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.1)
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.conns.append(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


def _reqs(n: int, tag: str) -> list[CallRequest]:
    return [CallRequest("king", "standin-generator", [{"role": "user", "content": f"{tag} {i}"}], {"temperature": 0})
            for i in range(n)]


def test_whole_replies_slower_than_the_timeout_are_paid_once_within_the_bound(fresh_standin, tmp_path):
    fresh_standin.state.latency_ms = 1500  # every reply takes 1.5 x timeout_s
    cfg = CallsConfig(timeout_s=1.0, stream=False, concurrency=6, retry_budget=4, backoff_base_s=0.01)
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
    results, stats = caller.run(_reqs(18, "slow"))
    time.sleep(0.2)  # replies of abandoned requests would still be landing at the endpoint
    st = fresh_standin.state.stats()
    assert all(r.ok for r in results) and stats.completed == 18
    assert st["answers"] == st["distinct_bodies_answered"] == 18 and st["repeats"] == 0, st
    assert max(fresh_standin.state.answered.values()) == 1  # counted per body hash at the endpoint
    assert st["max_in_flight"] <= 6 and st["requests"] == 18, st
    assert stats.retries == 0 and stats.possibly_billed_retries == 0 and stats.slow_replies == 18


@pytest.mark.parametrize("stream", [True, False])
def test_a_black_hole_fails_every_call_within_the_deadline(tmp_path, stream):
    cfg = CallsConfig(timeout_s=0.5, deadline_s=3.0, stream=stream, concurrency=16, retry_budget=6,
                      backoff_base_s=0.01, backoff_max_s=0.05)
    with BlackHole() as hole:
        caller = LLMCaller(Endpoint(hole.url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"))
        t0 = time.monotonic()
        results, stats = caller.run(_reqs(8, "void"))
        elapsed = time.monotonic() - t0
        connections = len(hole.conns)
    assert elapsed < 3.0 + 1.0, elapsed
    assert not any(r.ok for r in results) and stats.failed == 8
    assert stats.failures["deadline"] >= 1 and set(stats.failures) <= {"deadline", "no_reply"}, stats.failures
    assert "no reply within calls.deadline_s = 3 s" in stats.first_errors["deadline"]
    if "no_reply" in stats.first_errors:
        assert "answered none of this step's requests" in stats.first_errors["no_reply"]
    assert connections <= 8 + 16  # no storm of reconnections
    if not stream:  # a whole reply is waited for, not asked for again: one request per call at most
        assert stats.calls_made <= 8


def test_a_refusal_is_shown_in_the_providers_words_once_per_kind(fresh_standin, tmp_path):
    lines: list[str] = []
    cfg = CallsConfig(timeout_s=5, retry_budget=3, backoff_base_s=0.01)
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, CallStore(tmp_path / "c.sqlite"), log=lines.append)
    reqs = [CallRequest("king", "standin-refuses", [{"role": "user", "content": f"x {i}"}], {}) for i in range(5)]
    results, stats = caller.run(reqs)
    assert not any(r.ok for r in results) and stats.failures == {"http_400": 5} and stats.calls_made == 5
    said = "this model is not served by this deployment (stand-in)"
    assert said in stats.first_errors["http_400"] and all(said in r.error for r in results)
    assert sum("first http_400" in line and said in line for line in lines) == 1, lines
    assert said in stats.failure_summary()


def test_a_lease_outlives_a_reply_longer_than_its_time_to_live(fresh_standin, tmp_path):
    """Two callers, one body, a reply three times the lease's life: the second waits for the
    first's reply instead of taking over a lapsed lease and buying the body again."""
    fresh_standin.state.latency_ms = 1800
    cfg = CallsConfig(timeout_s=5, concurrency=4)
    req = _reqs(1, "long")
    out = []

    def run(delay):
        time.sleep(delay)
        store = CallStore(tmp_path / "c.sqlite")
        store.lease_ttl_s = 0.6
        out.append(LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), cfg, store).run(req))

    threads = [threading.Thread(target=run, args=(d,)) for d in (0.0, 0.3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(out) == 2 and all(rs[0].ok for rs, _ in out)
    assert fresh_standin.state.stats()["answers"] == 1
    assert sorted(s.completed_elsewhere + s.completed for _, s in out) == [1, 1]


