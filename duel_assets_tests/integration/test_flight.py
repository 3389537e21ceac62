"""The deployment's flight rules: announced limits, the window's reaction to 429s, pacing, probing."""
import time

import pytest

from duel_assets.lib.calls import flight
from duel_assets.lib.calls.errors import RateLimitInfo, duration_seconds


@pytest.mark.parametrize("raw,seconds", [("20ms", 0.02), ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5),
                                         ("1.5", 1.5), ("0.250s", 0.25), ("soon", None), ("", None), ("5x", None)])
def test_reset_durations(raw, seconds):
    assert duration_seconds(raw) == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_headers():
    info = RateLimitInfo.from_headers({"x-ratelimit-limit-requests": "1200", "x-ratelimit-remaining-requests": "0",
                                       "x-ratelimit-reset-requests": "50ms", "x-ratelimit-limit-tokens": "90000"})
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s, info.limit_tokens) == (1200, 0, 0.05, 90000)
    assert RateLimitInfo.from_headers({"content-type": "application/json"}) is None


def _w(n):
    return [flight.Wanted(f"k{i}", 100) for i in range(n)]


def test_an_endpoint_never_heard_from_gets_one_request_first():
    limits, b = flight.Limits(concurrency=16), flight.Budget()
    assert flight.decide(_w(10), limits, b, time.time(), live=0, mine=0, contenders=1, others_waiting=False).granted == ["k0"]
    assert flight.decide(_w(10), limits, b, time.time(), live=1, mine=1, contenders=1, others_waiting=False).granted == []
    flight.on_success(limits, b)
    assert len(flight.decide(_w(20), limits, b, time.time(), live=1, mine=1, contenders=1, others_waiting=False).granted) == 15


def test_a_429_burst_halves_the_window_once_and_successes_grow_it_back():
    limits, b = flight.Limits(concurrency=64), flight.Budget(probed=1.0)
    now = time.time()
    for _ in range(40):  # a burst of 429s answers one congestion event
        flight.on_rate_limited(limits, b, now, retry_after=0.5, live=64)
    assert b.window == 32 and b.pause_until == pytest.approx(now + 0.5)
    assert flight.decide(_w(5), limits, b, now, live=0, mine=0, contenders=1, others_waiting=False).wake_at == b.pause_until
    flight.on_rate_limited(limits, b, now + 2, None, live=32)  # a later event halves again
    assert b.window == 16
    for _ in range(17):  # a window's worth of successes: one more slot
        flight.on_success(limits, b)
    assert 17.0 < b.window < 17.1
    assert flight.capacity(limits, b) == 17


def test_starts_are_paced_to_the_tighter_of_configured_and_announced_limits():
    limits, b = flight.Limits(concurrency=64, rpm=6000), flight.Budget(probed=1.0)
    flight.on_headers(b, time.time(), limit_requests=600, limit_tokens=None, remaining_requests=5, reset_requests_s=1.0)
    assert flight.rates(limits, b)[0] == pytest.approx(600 * flight.PACE_MARGIN)
    now = time.time()
    d = flight.decide(_w(64), limits, b, now, live=0, mine=0, contenders=1, others_waiting=False)
    step = 60 / (600 * flight.PACE_MARGIN)
    assert len(d.granted) == int(flight.BURST_S / step) + 1 and d.wake_at > now  # a short burst, then one per step
    # the provider says none are left: wait for its next request token, not for the whole bucket
    flight.on_headers(b, now, limit_requests=600, limit_tokens=None, remaining_requests=0, reset_requests_s=30.0)
    assert b.pause_until == pytest.approx(now + 0.1)


def test_holders_share_the_bound_while_others_wait():
    limits, b = flight.Limits(concurrency=8), flight.Budget(probed=1.0)
    d = flight.decide(_w(8), limits, b, time.time(), live=2, mine=2, contenders=2, others_waiting=True)
    assert len(d.granted) == 2  # half of 8 for each of two holders, 2 already in flight
    d = flight.decide(_w(8), limits, b, time.time(), live=2, mine=2, contenders=2, others_waiting=False)
    assert len(d.granted) == 6 and d.full


def test_against_a_rate_limited_endpoint_the_caller_learns_the_limit_and_stays_under_it(fresh_standin, tmp_path):
    from duel_assets.lib.calls import CallRequest, CallStore, LLMCaller
    from duel_assets.lib.settings import CallsConfig, Endpoint

    fresh_standin.state.set_limits(rpm=600)  # 10 a second, one second of burst
    fresh_standin.state.latency_ms = 50
    caller = LLMCaller(Endpoint(fresh_standin.base_url, "k", "LLM"), CallsConfig(concurrency=32, timeout_s=5),
                       CallStore(tmp_path / "c.sqlite"))
    reqs = [CallRequest("king", "standin-generator", [{"role": "user", "content": f"paced {i}"}], {}) for i in range(50)]
    t0 = time.monotonic()
    results, stats = caller.run(reqs)
    wall = time.monotonic() - t0
    assert all(r.ok for r in results)
    st = fresh_standin.state.stats()
    assert st["rate_limited"] <= 1 and stats.rate_limited == st["rate_limited"]
    assert 3.8 <= wall < 8  # one second of burst, then 10 a second: at the limit, not far under it
    assert caller.cache.budget(fresh_standin.base_url, flight.Limits(32)).learned_rpm == 600


def test_a_store_that_fails_fails_the_waiting_calls_instead_of_hanging(tmp_path):
    """A lost database connection while calls wait for a slot: every waiter gets the error."""
    import asyncio

    from duel_assets.lib.calls import CallStore
    from duel_assets.lib.calls.gate import Gate

    class BrokenStore(CallStore):
        def claim(self, *args, **kwargs):
            raise ConnectionError("call store unreachable")

    store = BrokenStore(tmp_path / "calls.sqlite")

    async def main():
        gate = Gate(store, "http://x/v1", flight.Limits(concurrency=4))
        try:
            return await asyncio.wait_for(asyncio.gather(*(gate.acquire(f"k{i}", 10) for i in range(3)),
                                                         return_exceptions=True), timeout=5)
        finally:
            await gate.aclose()

    results = asyncio.run(main())
    assert [type(r) for r in results] == [ConnectionError] * 3
    store.close()
