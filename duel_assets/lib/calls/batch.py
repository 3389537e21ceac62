"""Calls through the provider's batch API (``calls.mode = "batch"``), via the ``openai`` package's
files and batches.

* requests of the roles in ``calls.batch_roles`` are collected while the stage plans them (until
  none has come for :data:`COLLECT_S`): the stage's waves (answers, then the first judges, then the
  rest the decided-bucket rule still needs) become one batch each;
* a request already in the call store is served from it; one that a live batch already carries
  (submitted by this run, another process, or a run that was killed) waits for that batch; the
  rest are claimed in the store, written to a JSONL, uploaded and submitted, and the batch id is
  recorded with its requests, so a re-launched run polls the same batch and never submits them again;
* while a batch runs, the step's log says how far it is; each result is stored as the output file
  is read (at the batch prices); requests that errored or expired are asked again one by one
  online (``calls.batch_retry = "online"``) or in a new batch, at most ``calls.retry_budget`` times.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from . import downgrades as dg
from .budget import BudgetReached
from .store_batches import TERMINAL
from .types import CallRequest, CallResult, CallStats
from .wire import parse_reply, request_body

COLLECT_S = 0.3  # a batch is submitted once no request has joined it for this long
ENDPOINT_PATH = "/v1/chat/completions"


class Batcher:
    def __init__(self, session) -> None:
        self.session = session
        self.caller = session.caller
        self.store = session.caller.store
        self.endpoint = session.caller.endpoint_id
        self.cfg = session.cfg
        self.queue: dict[str, tuple[CallRequest, asyncio.Future, CallStats, int]] = {}
        self.last = 0.0
        self.task: asyncio.Task | None = None
        self.polls: dict[str, asyncio.Task] = {}  # batch id -> the task reading it
        self.jobs: set[asyncio.Task] = set()
        self.holder = session.gate.holder
        self.adopted = False
        self.formats: dict[str, str | None] = {}  # key -> the structured output its body asks for (stored with the reply)

    def takes(self, req: CallRequest) -> bool:
        return getattr(self.cfg, "mode", "online") == "batch" and req.role in getattr(self.cfg, "batch_roles", ())

    async def call(self, req: CallRequest, key: str, stats: CallStats, rounds: int = 0) -> CallResult:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.queue[key] = (req, fut, stats, rounds)
        self.last = time.monotonic()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._collect())
        return await fut

    async def _collect(self) -> None:
        while self.queue:
            while time.monotonic() - self.last < COLLECT_S:
                await asyncio.sleep(COLLECT_S / 4)
            items, self.queue = self.queue, {}
            job = asyncio.ensure_future(self._guarded(items))
            self.jobs.add(job)
            job.add_done_callback(self.jobs.discard)

    async def _guarded(self, items: dict) -> None:
        try:
            await self._submit(items)
        except Exception as exc:  # every waiter gets an answer
            for _, fut, _, _ in items.values():
                if not fut.done():
                    fut.set_exception(exc)

    async def _adopt_orphans(self) -> None:
        """Submissions a dead process left half done: adopted when the endpoint has their batch."""
        if self.adopted:
            return
        self.adopted = True
        orphans = self.store.orphaned_submissions(self.endpoint)
        if not orphans:
            return
        by_file: dict[str, str] = {}
        async for b in self.session.client.sdk.batches.list(limit=100):
            by_file.setdefault(b.input_file_id, b.id)
        for pending, file_id in orphans:
            if file_id and file_id in by_file:
                self.store.batch_created(pending, by_file[file_id])
                self.caller.log(f"{self.session.label}: batch {by_file[file_id]} submitted by a process that stopped "
                                "is taken over")
            else:
                self.store.batch_abandoned(pending)

    async def _submit(self, items: dict) -> None:
        await self._adopt_orphans()
        bodies = {key: self._body(req) for key, (req, _, _, _) in items.items()}
        self.formats.update({key: dg.reply_format(body) for key, body in bodies.items()})
        pricing = self.session.pricing
        wanted = [(key, req.role, req.model, pricing.worst(req)) for key, (req, _, _, _) in items.items()]
        done, live, pending, mine, left = self.store.claim_for_batch(self.holder, self.endpoint, wanted, pricing.max_usd)
        for key, resp in done.items():
            self._resolve(items[key], key, resp, fresh=False)
        for key, spent in left.items():  # the budget: never within it, or once what is in flight lands
            if spent >= 0 and not items[key][1].done():
                items[key][1].set_exception(BudgetReached(spent, pricing.max_usd))
        waits = {batch_id for batch_id in live.values()}
        if mine:
            assert pending is not None
            waits.add(await self._create(pending, {k: bodies[k] for k in mine}))
        await asyncio.gather(*(self._poll(b) for b in waits))
        for key in live:
            self._land(items[key], key, mine=False)
        for key in mine:
            self._land(items[key], key, mine=True)
        later = {k: items[k] for k, spent in left.items() if spent < 0}
        if later:  # asked again once this round's batches ended (or after a poll, when none was ours)
            if not waits:
                await asyncio.sleep(float(getattr(self.cfg, "batch_poll_s", 30.0)))
            for key, item in later.items():
                self.queue[key] = item
            self.last = time.monotonic()
            if self.task is None or self.task.done():
                self.task = asyncio.ensure_future(self._collect())

    def _body(self, req: CallRequest) -> dict:
        """The body a request goes with, downgraded as the endpoint wants (never streamed)."""
        body = request_body(req)
        dg.apply(body, dg.for_request(self.session.downgrades.of(req.model), req.params))
        return body

    async def _create(self, pending: str, bodies: dict[str, dict]) -> str:
        sdk = self.session.client.sdk
        lines = []
        for key, body in bodies.items():
            lines.append(json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT_PATH, "body": body},
                                    ensure_ascii=False))
        try:
            f = await sdk.files.create(file=("requests.jsonl", ("\n".join(lines) + "\n").encode()), purpose="batch")
            self.store.batch_uploaded(pending, f.id)
            b = await sdk.batches.create(input_file_id=f.id, endpoint=ENDPOINT_PATH, completion_window="24h")
        except Exception:
            self.store.batch_abandoned(pending)
            raise
        self.store.batch_created(pending, b.id, b.status)
        self.caller.log(f"{self.session.label}: batch {b.id} submitted ({len(bodies)} requests)")
        return b.id

    def _poll(self, batch_id: str) -> asyncio.Task:
        task = self.polls.get(batch_id)
        if task is None:
            task = self.polls[batch_id] = asyncio.ensure_future(self._read(batch_id))
        return task

    async def _read(self, batch_id: str) -> None:
        """Wait for ``batch_id`` to end, then store what its output file holds."""
        sdk, said = self.session.client.sdk, None
        while True:
            b = await sdk.batches.retrieve(batch_id)
            counts = b.request_counts
            now = (b.status, counts.completed if counts else None)
            if now != said:
                said = now
                total = counts.total if counts else "?"
                self.caller.log(f"{self.session.label}: batch {batch_id} {b.status}: "
                                f"{counts.completed if counts else 0}/{total} done, {counts.failed if counts else 0} failed")
            if b.status in TERMINAL:
                break
            await asyncio.sleep(float(getattr(self.cfg, "batch_poll_s", 30.0)))
        rows = self.store.batch_rows(batch_id)
        if b.output_file_id:
            text = (await sdk.files.content(b.output_file_id)).text
            for line in filter(str.strip, text.splitlines()):
                self._store_line(json.loads(line), rows)
        self.store.batch_status(batch_id, b.status)

    def _store_line(self, line: dict, rows: dict[str, tuple[str, str]]) -> None:
        key, resp = line.get("custom_id"), line.get("response") or {}
        if not key or key not in rows or resp.get("status_code") != 200:
            return
        role, model = rows[key]
        parsed = {**parse_reply(resp.get("body") or {}), "batch": True, "reply_format": self.formats.get(key)}
        self.store.put(key, role, model, parsed, self.endpoint, self.session.pricing.paid(model, parsed, batch=True))

    def _land(self, item: tuple, key: str, mine: bool) -> None:
        """A request's batch has ended: its stored result, or it is asked again. ``mine``: this
        session submitted it (else a batch of another process, or of a run that stopped)."""
        req, fut, stats, rounds = item
        stored = self.store.get(key)
        if stored is not None:
            if not mine and not fut.done():
                stats.completed_elsewhere += 1
                fut.set_result(CallResult.from_cache(key, stored))
            self._resolve(item, key, stored, fresh=True)
            return
        if rounds + 1 >= self.cfg.retry_budget:
            stats.fail("batch_failed", f"{key[:12]}: errored or expired in {rounds + 1} batch(es)")
            self.session.failed += 1
            fut.set_result(CallResult(key=key, ok=False, error_kind="batch_failed", error="errored or expired in batch"))
            return
        stats.retries += 1
        stats.retry_kinds["batch"] += 1
        if getattr(self.cfg, "batch_retry", "online") == "batch":
            _chain(fut, asyncio.ensure_future(self.call(req, key, stats, rounds + 1)))
        else:
            merge = asyncio.get_running_loop().create_future()  # _send's own (its aliases answer through it)
            _chain(fut, asyncio.ensure_future(self.session._send(req, key, stats, merge)))

    def _resolve(self, item: tuple, key: str, resp: dict, fresh: bool) -> None:
        req, fut, stats, _ = item
        if fut.done():
            return
        if fresh:  # bought by a batch of this deployment: counted as this run's new call
            stats.completed += 1
            stats.calls_made += 1
            stats.add_tokens(req.model, int(resp.get("prompt_tokens") or 0), int(resp.get("completion_tokens") or 0),
                             int(resp.get("cached_tokens") or 0))
            fut.set_result(CallResult(**{**{k: v for k, v in resp.items() if k in CallResult.__dataclass_fields__},
                                         "key": key, "ok": True, "attempts": 1}))
        else:
            stats.cache_hits += 1
            fut.set_result(CallResult.from_cache(key, resp))

    async def aclose(self) -> None:
        for t in [*self.jobs, *self.polls.values(), *([self.task] if self.task else [])]:
            t.cancel()
        await asyncio.gather(*self.jobs, *self.polls.values(), *([self.task] if self.task else []), return_exceptions=True)


def _chain(fut: asyncio.Future, task: asyncio.Future) -> None:
    def done(t: asyncio.Future) -> None:
        if fut.done():
            return
        if t.cancelled():
            fut.cancel()
        elif t.exception() is not None:
            fut.set_exception(t.exception())  # type: ignore[arg-type]
        else:
            fut.set_result(t.result())
    task.add_done_callback(done)


__all__: list[Any] = ["Batcher"]
