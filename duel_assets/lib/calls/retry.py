"""The retry policy of one call: what is retried, how long an attempt may take, when the call gives up.

* retried: 429, 5xx and 408, timeouts, broken connections, garbage replies and streams cut
  before their ``finish_reason``, within ``calls.retry_budget`` attempts, after an exponential
  backoff with full jitter (or the server's ``Retry-After``); any other status (400, 401, 404,
  ...), and a 500 whose body is a validation error, fails the call at once with the provider's
  message, unless it refuses a switch of the request (:mod:`.downgrades`: asked again at once,
  downgraded);
* ``calls.timeout_s`` bounds connecting and, for a streamed reply, each silence between chunks; a
  timed-out attempt's successor gets twice the timeout, up to ``TIMEOUT_GROWTH`` x ``timeout_s``;
* a reply asked for whole (``calls.stream = false``) is not given up at ``timeout_s``: once the
  body is sent the provider may finish and bill it, so the same request is read on, up to the
  call's deadline, instead of being bought again;
* ``calls.deadline_s`` bounds a call from its first attempt to its last (attempts, pauses and
  waits for a slot in between): past it, the call fails with kind ``deadline`` and the last
  attempt's reason.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from .errors import MAX_RETRY_AFTER_S

TIMEOUT_GROWTH = 4.0  # the longest attempt timeout, in multiples of calls.timeout_s


@dataclass
class CallClock:
    timeout_s: float
    deadline_s: float
    started: float | None = None  # time.monotonic() of the first attempt
    timeout: float = 0.0  # the next attempt's timeout

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()
            self.timeout = self.timeout_s

    def left(self) -> float:
        """Seconds before the call's deadline (the whole deadline before the first attempt)."""
        return self.deadline_s if self.started is None else self.deadline_s - (time.monotonic() - self.started)

    def attempt(self) -> tuple[float, float]:
        """(timeout for connecting and streamed silences, how long a whole reply may be waited for)."""
        left = max(0.0, self.left())
        return min(self.timeout, left), left

    def timed_out(self) -> None:
        self.timeout = min(self.timeout * 2, TIMEOUT_GROWTH * self.timeout_s)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def late(self, attempts: int, kind: str, detail: str) -> str:
        """Why a call failed at its deadline: how many attempts in how long, and the last one's reason."""
        return (f"no reply within calls.deadline_s = {self.deadline_s:g} s ({attempts} attempt(s) in "
                f"{self.elapsed():.1f} s); last: {kind}: {detail}")[:600]


def backoff(attempt: int, base_s: float, max_s: float, suggested: float | None) -> float:
    """The pause before attempt ``attempt + 1``: the server's suggestion (bounded), else exponential
    backoff with full jitter."""
    if suggested is not None:
        return min(suggested, MAX_RETRY_AFTER_S)
    return random.uniform(0, min(max_s, base_s * (2 ** attempt)))
