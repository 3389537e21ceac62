"""What a call is, what it returned, and what a batch of calls cost."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property


def call_key(*, role: str, model: str, messages: list[dict], tools: list[dict] | None, params: dict,
             sample_index: int) -> str:
    """The content address of a call: everything that shapes the reply, nothing else."""
    blob = json.dumps(
        {"role": role, "model": model, "messages": messages, "tools": tools or None, "params": params,
         "sample_index": sample_index},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def call_identity(endpoint: str, content_key: str) -> str:
    """A call's identity: its content (:func:`call_key`) and the endpoint it is bought from (as
    :func:`..settings.endpoint_id` gives it: never a key). A reply is reused only for the endpoint
    that gave it."""
    return hashlib.sha256(f"{endpoint}\n{content_key}".encode()).hexdigest()


@dataclass
class CallRequest:
    role: str  # king | challenger | judge
    model: str
    messages: list[dict]
    params: dict = field(default_factory=dict)  # temperature, max_tokens, ...
    tools: list[dict] | None = None
    sample_index: int = 0
    tag: str = ""  # caller's id (turn id, judge, order) - not part of the key

    @cached_property
    def key(self) -> str:
        """Content address of the call (computed once: requests are not mutated after creation);
        the call's identity adds the endpoint (:func:`call_identity`)."""
        return call_key(role=self.role, model=self.model, messages=self.messages, tools=self.tools,
                        params=self.params, sample_index=self.sample_index)

    @cached_property
    def prompt_estimate(self) -> int:
        """The prompt's tokens, estimated: about 4 characters a token (message texts and tools)."""
        chars = sum(len(c) if isinstance(c := m.get("content"), str) else len(json.dumps(c)) if c else 0
                    for m in self.messages)
        return (chars + (len(json.dumps(self.tools)) if self.tools else 0)) // 4

    @cached_property
    def est_tokens(self) -> int:
        """What a provider's tokens-per-minute limit charges before the call: prompt (~4 characters a
        token) plus the completion budget."""
        return self.prompt_estimate + int(self.params.get("max_tokens") or 0)


@dataclass
class CallResult:
    key: str
    ok: bool
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its prefix cache
    usage_missing: bool = False  # the endpoint sent no usage
    usage_estimated: bool = False  # so the tokens are estimated from the text
    served_model: str | None = None
    standin: bool = False  # answered by the offline stand-in, not a model
    reply_format: str | None = None  # the structured output asked for (json_schema, json_object), None: free text
    error_kind: str | None = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False  # served from our call cache (no request sent)

    @classmethod
    def from_cache(cls, key: str, data: dict) -> CallResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "key": key, "ok": True, "cached": True, "attempts": 0})


_COUNTERS = ("requested", "calls_made", "completed", "cache_hits", "merged", "completed_elsewhere", "retries",
             "possibly_billed_retries", "slow_replies", "rate_limited", "usage_missing", "length_finishes",
             "empty_content", "skipped_decided", "identical_answers", "resamples", "broken_streams")


@dataclass
class CallStats:
    requested: int = 0
    calls_made: int = 0  # HTTP requests sent, retries included
    completed: int = 0  # calls that completed in this batch (new spend)
    cache_hits: int = 0  # answered from the call cache before anything was sent
    merged: int = 0  # identical to a call already in flight in this process: waited for its reply
    completed_elsewhere: int = 0  # another process (or session) completed it while this one waited
    retries: int = 0
    possibly_billed_retries: int = 0  # retries after an attempt the provider may have finished and billed
    slow_replies: int = 0  # whole (not streamed) replies that took longer than timeout_s: read to their end
    rate_limited: int = 0  # 429 replies
    failures: Counter = field(default_factory=Counter)  # final failures by kind
    first_errors: dict = field(default_factory=dict)  # kind -> the first final failure's text (the provider's message)
    retry_kinds: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    usage_missing: int = 0
    length_finishes: int = 0
    empty_content: int = 0
    skipped_decided: int = 0  # judge calls not sent: the turn's bucket was already fixed
    identical_answers: int = 0  # turns whose answers were the same action: a tie without judges
    resamples: int = 0  # malformed answers asked for again (next sample index)
    broken_streams: int = 0  # streamed replies cut before their finish_reason (retried, never stored)
    downgrades: Counter = field(default_factory=Counter)  # switches learnt to be refused, by switch
    downgrades_in_effect: dict = field(default_factory=dict)  # model -> {switch: value} the calls went with
    wall_s: float = 0.0
    model_tokens: dict = field(default_factory=dict)  # model -> [prompt, completion, cached] of new calls
    window_trace: list = field(default_factory=list)  # [(seconds since start, concurrency window)]

    def add_tokens(self, model: str, prompt: int, completion: int, cached: int = 0) -> None:
        p, c, k = self.model_tokens.get(model, (0, 0, 0))
        self.model_tokens[model] = (p + prompt, c + completion, k + cached)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cached_tokens += cached

    def merge(self, other: CallStats) -> CallStats:
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        for kind, text in other.first_errors.items():
            self.first_errors.setdefault(kind, text)
        self.retry_kinds.update(other.retry_kinds)
        self.downgrades.update(other.downgrades)
        for model, switches in other.downgrades_in_effect.items():
            self.downgrades_in_effect.setdefault(model, {}).update(switches)
        for m, toks in other.model_tokens.items():
            self.add_tokens(m, *toks)
        self.wall_s = max(self.wall_s, other.wall_s)
        self.window_trace = self.window_trace or other.window_trace
        return self

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, kind: str, text: str) -> None:
        """Count one final failure; the first of its kind keeps its text."""
        self.failures[kind] += 1
        self.first_errors.setdefault(kind, text)

    def failure_summary(self) -> str:
        """``by kind {...}`` and the first failure of each kind, for a step's failure message."""
        firsts = "; ".join(f"first {k}: {t}" for k, t in self.first_errors.items())
        return f"by kind {dict(self.failures)}" + (f"; {firsts}" if firsts else "")

    def failure_rate(self) -> float:
        return self.failed / self.requested if self.requested else 0.0

    def cost(self, prices: dict) -> float | None:
        """Estimated USD of the new calls, from prices per 1M tokens (``prompt``, ``completion`` and
        ``cached_prompt`` for prompt tokens served from the provider's cache; without it cached tokens
        cost the prompt price); None without prices."""
        if not prices:
            return None
        total = 0.0
        for model, (p, c, k) in self.model_tokens.items():
            pr = _price(prices, model)
            if pr:
                cached_price = pr.get("cached_prompt")
                cached_price = pr.get("prompt", 0.0) if cached_price is None else cached_price
                total += ((p - k) * pr.get("prompt", 0.0) + k * cached_price + c * pr.get("completion", 0.0)) / 1e6
        return round(total, 6)

    def as_metadata(self) -> dict:
        md = {f"llm_{name}": getattr(self, name) for name in _COUNTERS}
        md.update({
            "llm_failures": self.failed,
            "llm_failures_by_kind": dict(self.failures),
            "llm_first_error_by_kind": dict(self.first_errors),
            "llm_retries_by_kind": dict(self.retry_kinds),
            "llm_downgrades": dict(self.downgrades),
            "llm_downgrades_in_effect": self.downgrades_in_effect,
            "llm_prompt_tokens": self.prompt_tokens,
            "llm_completion_tokens": self.completion_tokens,
            "llm_cached_prompt_tokens": self.cached_tokens,
            "llm_cached_prompt_share": round(self.cached_tokens / self.prompt_tokens, 4) if self.prompt_tokens else None,
            "llm_wall_seconds": round(self.wall_s, 3),
        })
        if self.window_trace:
            md["llm_window_trace"] = [[round(t, 2), round(w, 2)] for t, w in self.window_trace]
        return md


def _price(prices, model: str) -> dict | None:
    pr = prices.get(model) if hasattr(prices, "get") else None
    if pr is None:
        return None
    return pr if isinstance(pr, dict) else {k: v for k, v in vars(pr).items() if v is not None}
