"""This process's side of the deployment's flight rules: requests wait here for a slot.

Requests queue in arrival order. One pump task asks the store, in one transaction for many keys at
a time, which of them are already completed (anywhere), which may be sent now (a lease, within the
deployment's concurrency window and pacing), and which are in flight elsewhere (they wait for that
reply instead of buying it again). The pump asks again when one of this process's requests frees a
slot, when the pacing clock says so, or after a short poll while other processes hold the slots.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import OrderedDict

from . import flight
from .budget import BudgetReached

POLL_S = 0.05  # while other processes hold the slots or the bodies we want


class Gate:
    def __init__(self, store, endpoint: str, limits: flight.Limits, on_window=None):
        self.store = store
        self.endpoint = endpoint
        self.limits = limits
        self.holder = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.waiting: OrderedDict[str, tuple[flight.Wanted, asyncio.Future]] = OrderedDict()
        self.elsewhere: set[str] = set()  # waiting keys another holder is sending
        self.seen_elsewhere: set[str] = set()  # keys that waited on another holder's request
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.held: set[str] = set()  # keys leased to this holder (requests in flight)
        self._renewer: asyncio.Task | None = None
        self._registered = False
        self._last_renew = 0.0
        self.on_window = on_window  # callback(window) when the shared window changes
        self._window: float | None = None

    async def acquire(self, key: str, tokens: int, retry: bool = False, usd: float = 0.0) -> dict | None:
        """Wait for a slot for ``key``: None when this process may send it (it holds the lease), or
        the stored response when the call is completed (already, or by another holder meanwhile:
        :meth:`waited_elsewhere` tells which). A ``retry`` goes to the head of the queue: its call's
        deadline is already running. ``usd``: the request's worst-case cost; with a budget
        (``limits.max_usd``) a request that can never fit raises :class:`.budget.BudgetReached`."""
        if not self._registered:
            self.store.register(self.holder, self.endpoint)
            self._registered = True
        fut = asyncio.get_running_loop().create_future()
        self.waiting[key] = (flight.Wanted(key, tokens, usd), fut)
        if retry:
            self.waiting.move_to_end(key, last=False)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._pump())
        stored = await fut
        if stored is None:  # leased to this holder until complete() or release()
            self.held.add(key)
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.ensure_future(self._keep_leases())
        return stored

    async def _keep_leases(self) -> None:
        """Renew this holder's leases while any request of it is in flight, however long its reply
        takes (the pump renews only while keys wait): a lease that lapsed would let another process
        send the same body, and let more requests start than the concurrency bound allows."""
        while self.held:
            await asyncio.sleep(self.store.lease_ttl_s / 3)
            if self.held:
                self._last_renew = time.time()
                self.store.renew(self.holder)

    def waited_elsewhere(self, key: str) -> bool:
        """Whether ``key`` waited for another holder's request (and forget it)."""
        if key in self.seen_elsewhere:
            self.seen_elsewhere.discard(key)
            return True
        return False

    def complete(self, key: str, role: str, model: str, response: dict, usd: float | None = None) -> bool:
        stored = self.store.complete(self.holder, self.endpoint, key, role, model, response, self.limits, usd)
        self.held.discard(key)
        self._wake.set()  # a slot of ours is free
        return stored

    def release(self, key: str) -> None:
        self.store.release(self.holder, key, self.endpoint)
        self.held.discard(key)
        self._wake.set()

    def feedback(self, rate_limited: bool, retry_after: float | None, headers: dict | None) -> None:
        b = self.store.feedback(self.endpoint, self.limits, rate_limited, retry_after, headers)
        self._note_window(flight.effective_window(self.limits, b))

    def _note_window(self, window: float) -> None:
        if self.on_window is not None and window != self._window:
            self._window = window
            self.on_window(window)

    def _batch(self) -> list[flight.Wanted]:
        """The head of the queue (as many as could start at once), plus every key another process
        is sending (to see whether its reply has landed)."""
        head, n = [], self.limits.concurrency
        for key, (w, _) in self.waiting.items():
            if key in self.elsewhere:
                head.append(w)
            elif n > 0:
                head.append(w)
                n -= 1
        return head

    async def _pump(self) -> None:
        """Every waiter gets an answer: when the store fails (a lost database connection, a full
        disk), each waiting call fails with that error instead of waiting forever."""
        try:
            await self._pump_loop()
        except Exception as exc:
            for _, fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(exc)
            self.waiting.clear()
            self.elsewhere.clear()

    async def _pump_loop(self) -> None:
        while self.waiting:
            self._wake.clear()
            batch = self._batch()
            done, decision, held = self.store.claim(self.holder, self.endpoint, batch, self.limits,
                                                    waiting_after=max(0, len(self.waiting) - len(batch)))
            for key, response in done.items():
                self._resolve(key, response)
            for key in decision.granted:
                self._resolve(key, None)
            for key in decision.refused:
                self._resolve(key, BudgetReached(decision.spent, self.limits.max_usd))
            self.elsewhere = {k for k in held if k in self.waiting}
            self.seen_elsewhere |= self.elsewhere
            window = getattr(self.store, "last_window", {}).get(self.endpoint)
            if window is not None:
                self._note_window(window)
            self._renew()
            if not self.waiting:
                break
            if (done or decision.granted or decision.refused) and not decision.full and decision.wake_at is None:
                await asyncio.sleep(0)  # let the granted requests go out, then ask for more
                continue
            # nothing more can start now: wait for one of our slots to free (complete/release wake
            # us), for the pacing clock, or poll while other processes hold slots or our bodies
            delay = POLL_S * random.uniform(0.8, 1.2) if (decision.shared or self.elsewhere) else 1.0
            if decision.wake_at is not None:
                delay = min(delay, max(0.0, decision.wake_at - time.time()) + 0.001)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _resolve(self, key: str, response: dict | BudgetReached | None) -> None:
        item = self.waiting.pop(key, None)
        self.elsewhere.discard(key)
        if item is not None and not item[1].done():
            if isinstance(response, BudgetReached):
                item[1].set_exception(response)
            else:
                item[1].set_result(response)

    def _renew(self) -> None:
        now = time.time()
        if now - self._last_renew > self.store.lease_ttl_s / 3:
            self._last_renew = now
            self.store.renew(self.holder)

    async def aclose(self) -> None:
        for task in (self._task, self._renewer):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        for _, fut in self.waiting.values():
            if not fut.done():
                fut.cancel()
        if self._registered:
            self.store.unregister(self.holder)
