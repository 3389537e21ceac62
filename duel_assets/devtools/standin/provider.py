"""What makes the stand-in behave like a provider, and what it counts.

* faults: ``fault_rate`` of 429 (with Retry-After) / 500 / timeout / garbage, decided by a hash of
  the request and how often it was seen (repeatable runs, every request eventually succeeds), or an
  exact script queued by tests;
* limits: requests-per-minute and tokens-per-minute buckets (one second of burst) answering 429 with
  ``Retry-After`` and ``x-ratelimit-*`` headers, and those headers on every reply;
* latency: a fixed part plus optional parts per prompt and per completion token;
* a prefix cache per model: the prompt tokens of the longest prefix (tools, then whole messages)
  already seen are reported as ``usage.prompt_tokens_details.cached_tokens``;
* modes: refusals of request switches and broken transfers (:mod:`.modes`);
* counts: requests, answers, distinct bodies answered and **repeats** (an answer to a body already
  answered: money paid twice), requests in flight and their maximum, 429s, connections, streams
  cut by a request that arrived meanwhile.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, OrderedDict

from .batch_state import BatchState
from .modes import check_modes
from .replies import h

FAULT_KINDS = ("429", "500", "timeout", "garbage")
_PAYMENT_IRRELEVANT = ("stream", "stream_options")


def body_key(body: dict) -> str:
    """What a provider bills: the request without transport-only fields."""
    return hashlib.sha256(json.dumps({k: v for k, v in body.items() if k not in _PAYMENT_IRRELEVANT},
                                     sort_keys=True).encode()).hexdigest()


def message_pieces(body: dict) -> list[str]:
    """Each message as canonical JSON (sorted keys)."""
    return [json.dumps(m, sort_keys=True) for m in body.get("messages") or []]


def pieces_chars(pieces: list[str]) -> int:
    """``len(json.dumps(messages))`` from the pieces: the same items, the same separators."""
    return sum(map(len, pieces)) + 2 * max(0, len(pieces) - 1) + 2


class Bucket:
    """A token bucket refilled at ``per_minute`` / 60 a second, holding one second of it."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, cost: float, now: float) -> float:
        """0 when ``cost`` was taken, else the seconds until it could be."""
        self._refill(now)
        cost = min(cost, self.capacity)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def headers(self, kind: str, limit: float, now: float) -> dict:
        self._refill(now)
        reset = (self.capacity - self.tokens) / self.rate if self.rate else 0.0
        return {f"x-ratelimit-limit-{kind}": f"{limit:g}", f"x-ratelimit-remaining-{kind}": str(int(self.tokens)),
                f"x-ratelimit-reset-{kind}": f"{reset:.3f}s"}


class StandinState:
    def __init__(self, latency_ms: float = 0.0, fault_rate: float = 0.0, faults: tuple[str, ...] = FAULT_KINDS,
                 retry_after_s: float = 0.2, timeout_sleep_s: float = 30.0, log_limit: int = 1_000_000,
                 rpm: float = 0.0, tpm: float = 0.0, ms_per_prompt_token: float = 0.0,
                 ms_per_completion_token: float = 0.0, prefix_cache: bool = True, stream_chunk_s: float = 0.25,
                 oracle=None, modes: tuple[str, ...] = (), batch_delay_s: float = 0.0, batch_error_rate: float = 0.0,
                 batch_expire_rate: float = 0.0):
        self.latency_ms = latency_ms
        self.fault_rate = fault_rate
        self.faults = tuple(f for f in faults if f in FAULT_KINDS) or FAULT_KINDS
        self.retry_after_s = retry_after_s
        self.timeout_sleep_s = timeout_sleep_s
        self.log_limit = log_limit
        self.ms_per_prompt_token = ms_per_prompt_token
        self.ms_per_completion_token = ms_per_completion_token
        self.prefix_cache = prefix_cache
        self.stream_chunk_s = stream_chunk_s  # the longest silence inside a streamed reply
        self.oracle = oracle  # optional: a judge of known quality (lib/calibration/oracle.JudgeOracle)
        self.initial_modes = check_modes(modes)  # refusals and broken transfers (:mod:`.modes`)
        self.lock = threading.Lock()
        self.batch = BatchState()  # the batch API's files and batches (:mod:`.batches`)
        self.batch.delay_s, self.batch.error_rate, self.batch.expire_rate = batch_delay_s, batch_error_rate, batch_expire_rate
        self.set_limits(rpm, tpm)
        self.reset()

    def set_limits(self, rpm: float = 0.0, tpm: float = 0.0) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.req_bucket = Bucket(rpm) if rpm else None
        self.tok_bucket = Bucket(tpm) if tpm else None

    def reset(self) -> None:
        with self.lock:
            self.script: list[str] = []
            self.seen: Counter = Counter()
            self.log: list[dict] = []
            self.bodies: list[bytes] | None = None  # a test sets [] to keep the chat bodies as received
            self.connections = 0  # TCP connections accepted: shows whether clients keep theirs alive
            self.answered: Counter = Counter()  # body key -> answers sent
            self.in_flight = 0
            self.max_in_flight = 0
            self.prefixes: OrderedDict = OrderedDict()
            self.counts: Counter = Counter()
            self.modes: list[str] = list(self.initial_modes)
            self.set_limits(self.rpm, self.tpm)
        self.batch.reset()

    # ------------------------------------------------------------------ faults and limits

    def decide(self, key: str) -> str | None:
        with self.lock:
            n = self.seen[key]
            self.seen[key] += 1
            if self.script:
                f = self.script.pop(0)
                return None if f == "ok" else f
        if self.fault_rate <= 0:
            return None
        if (h(key, n, "fault") % 10_000) / 10_000 < self.fault_rate:
            return self.faults[h(key, n, "kind") % len(self.faults)]
        return None

    def admit(self, tokens: int) -> tuple[float, dict]:
        """(seconds to wait before retrying, or 0 when admitted; rate-limit headers)."""
        now = time.monotonic()
        with self.lock:
            wait = 0.0
            if self.req_bucket and (w := self.req_bucket.take(1, now)):
                wait = w
            elif self.tok_bucket and (w := self.tok_bucket.take(tokens, now)):
                wait = w
                if self.req_bucket:  # the request was not admitted: give its request token back
                    self.req_bucket.tokens = min(self.req_bucket.capacity, self.req_bucket.tokens + 1)
            headers = {}
            if self.req_bucket:
                headers.update(self.req_bucket.headers("requests", self.rpm, now))
            if self.tok_bucket:
                headers.update(self.tok_bucket.headers("tokens", self.tpm, now))
            if wait:
                self.counts["rate_limited"] += 1
            return wait, headers

    # ------------------------------------------------------------------ prefix cache, latency

    def cached_tokens(self, body: dict, pieces: list[str]) -> int:
        """Prompt tokens (~4 characters each) of the longest prefix of this request, per model,
        already seen; the request's own prefixes are remembered for the next ones. ``pieces``: the
        messages as canonical JSON (:func:`message_pieces`)."""
        if not self.prefix_cache:
            return 0
        tools = json.dumps(body.get("tools"), sort_keys=True)
        digest = hashlib.sha256(f'[{json.dumps(body.get("model"))}, {tools}]'.encode())
        chars, cached = len(tools) if body.get("tools") else 0, 0
        with self.lock:
            for piece in pieces:
                digest.update(piece.encode())
                chars += len(piece)
                key = digest.hexdigest()
                if key in self.prefixes:
                    cached = chars
                    self.prefixes.move_to_end(key)
                else:
                    self.prefixes[key] = True
            while len(self.prefixes) > 2_000_000:
                self.prefixes.popitem(last=False)
        return cached // 4

    def latency_s(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self.latency_ms + self.ms_per_prompt_token * prompt_tokens
                + self.ms_per_completion_token * completion_tokens) / 1000.0

    # ------------------------------------------------------------------ counts

    def started(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.counts["requests"] += 1

    def arrivals(self) -> int:
        """Chat requests that have arrived so far."""
        with self.lock:
            return self.counts["requests"]

    def finished(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def answered_body(self, key: str, prompt_tokens: int, cached: int) -> None:
        with self.lock:
            self.answered[key] += 1
            self.counts["answers"] += 1
            self.counts["prompt_tokens"] += prompt_tokens
            self.counts["cached_tokens"] += cached

    def record(self, entry: dict) -> None:
        with self.lock:
            if len(self.log) < self.log_limit:
                self.log.append(entry)

    def stats(self) -> dict:
        with self.lock:
            c = self.counts
            return {"requests": c["requests"], "answers": c["answers"], "distinct_bodies_answered": len(self.answered),
                    "repeats": sum(n - 1 for n in self.answered.values() if n > 1),
                    "rate_limited": c["rate_limited"], "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                    "connections": self.connections, "prompt_tokens": c["prompt_tokens"], "cached_tokens": c["cached_tokens"],
                    "faults": {k[6:]: v for k, v in c.items() if k.startswith("fault:")},
                    "cut_streams": c["cut_streams"], "modes": list(self.modes), **self.batch.stats()}
