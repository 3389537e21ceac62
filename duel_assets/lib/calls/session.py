"""One call session (one step's event loop): calls merged, counted and traced.

``await session(request, stats, cached=None)`` makes (or serves from the cache) one call: a call
already in flight in this session with the same identity is waited for, not sent again; the rest
go over the wire as :mod:`.sending` says. The session owns the SDK client and this process's side
of the deployment's flight rules (:mod:`.gate`), and shows progress.
"""
from __future__ import annotations

import asyncio
import dataclasses
import sys
import time

from . import flight, transport
from .batch import Batcher
from .budget import BudgetReached, Pricing
from .gate import Gate
from .sending import Sending
from .types import CallRequest, CallResult, CallStats

STANDIN_CHECK_S = 10.0  # the longest wait for the endpoint to say whether it is the stand-in


class CallSession(Sending):
    """``await session(request, stats, cached=None)`` makes (or serves from the cache) one call;
    ``session.expect(n)`` announces more calls for the progress count."""

    def __init__(self, caller, label: str, total: int):
        self.caller, self.label = caller, label
        self.cfg = caller.cfg
        self.downgrades = caller.cache.downgrades  # what the endpoint refuses (the caller's: learnt here too)
        limits = flight.limits_of(self.cfg, self.downgrades.concurrency)
        self.client = transport.Client(caller.endpoint, limits.concurrency)
        self.stream = self.cfg.stream
        self.t0 = time.monotonic()
        self.trace: list[tuple[float, float]] = []
        self.gate = Gate(caller.store, caller.endpoint_id, limits, on_window=self._window)
        self.pricing = Pricing(caller.prices, limits.max_usd)
        self.over_budget: BudgetReached | None = None  # a request the budget refused (the step fails with it)
        self.batcher = Batcher(self) if self.cfg.mode == "batch" else None
        self.flights: dict[str, asyncio.Future] = {}
        self.announced: tuple = ()
        self.done, self.total, self.failed = 0, total, 0
        self.bar = _progress_bar(total, label) if caller.progress else None
        self.heard = False  # the endpoint has answered something (any status) in this session
        self.silenced: asyncio.Future = asyncio.get_running_loop().create_future()  # set: it never will
        self.logged: set[str] = set()  # failure kinds already logged
        self.pending: dict[tuple[str, str], tuple[str, str]] = {}  # (model, switch) -> (value, refusal), unconfirmed

    def count_spend(self) -> None:
        """With a budget, the deployment's spend is counted in the store (the calls stored before it
        was, once, at these prices)."""
        ensure = getattr(self.caller.store, "ensure_spend", None)
        if self.pricing.max_usd and ensure is not None:
            ensure(self.pricing)

    def raise_over_budget(self) -> None:
        """Once every call of the session has landed: the budget's refusal, if any."""
        if self.over_budget is not None:
            raise self.over_budget

    async def drop_stale_standin_replies(self) -> None:
        """Replies the offline stand-in gave at this address are served only while the stand-in
        still answers there: when something else does, they are removed from the store first."""
        store, endpoint = self.caller.store, self.caller.endpoint_id
        if not getattr(store, "has_standin_replies", None) or not store.has_standin_replies(endpoint):
            return
        now = await transport.is_standin(self.client, min(float(self.cfg.timeout_s), STANDIN_CHECK_S))
        if now is False:
            n = store.remove_standin_replies(endpoint)
            self.caller.log(f"{self.label}: {endpoint} is no longer the offline stand-in: its {n} stored stand-in "
                            "replies were removed (they are never served for another server)")

    def _window(self, window: float) -> None:
        self.trace.append((time.monotonic() - self.t0, window))

    def trace_into(self, stats: CallStats, points: int = 60) -> None:
        """The window over time (at most ``points`` samples) into ``stats``."""
        step = max(1, len(self.trace) // points)
        stats.window_trace = self.trace[::step] + ([self.trace[-1]] if self.trace and len(self.trace) % step != 1 else [])

    def expect(self, n: int, role: str = "", model: str = "") -> None:
        """``n`` more calls for the progress count (``role`` and ``model`` say where a routed session sends them)."""
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    async def __call__(self, req: CallRequest, stats: CallStats, cached: dict | None = None) -> CallResult:
        try:
            if cached is not None:  # from a batch lookup; otherwise the slot's claim looks (once, with the rest)
                stats.cache_hits += 1
                return CallResult.from_cache(self.caller.cache.identity(req), cached)
            key = self.caller.cache.identity(req)
            inflight = self.flights.get(key)
            if inflight is not None:  # the same body is on its way: share its reply
                stats.merged += 1
                r = await asyncio.shield(inflight)
                return dataclasses.replace(r, cached=r.ok, attempts=0)
            fut = asyncio.get_running_loop().create_future()
            self.flights[key] = fut
            try:
                if self.batcher is not None and self.batcher.takes(req):
                    r = await self.batcher.call(req, key, stats)
                else:
                    r = await self._send(req, key, stats, fut)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a merged waiter re-raises it, nobody else needs to
                raise
            finally:
                self.flights.pop(key, None)
            fut.set_result(r)
            return r
        except BudgetReached as exc:  # the requests in flight land and are stored; the step fails after
            self.over_budget = self.over_budget or exc
            self.failed += 1
            stats.fail("budget", str(exc))
            return CallResult(key=req.key, ok=False, error_kind="budget", error=str(exc))
        finally:
            self._tick(stats)

    def _tick(self, stats: CallStats) -> None:
        self.done += 1
        self.total = total = max(self.total, self.done)  # a judge's stricter retry is a call nobody announced
        if self.bar is not None:
            self.bar.total = total
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
        if self.done % max(1, total // 10) == 0 or self.done == total:
            self.caller.log(f"{self.label}: {self.done}/{total} calls done, {self.failed} failed")

    async def aclose(self) -> None:
        if self.bar is not None:  # the last state drawn, done / total: updates between redraws are not shown
            self.bar.refresh()
            self.bar.close()
        if not self.silenced.done():
            self.silenced.cancel()
        if self.batcher is not None:
            await self.batcher.aclose()
        await self.gate.aclose()
        await self.client.close()


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=label, unit="call", file=sys.stderr)
