"""What the stand-in's batch API holds (:mod:`.batches`): files, batches, and its counts."""
from __future__ import annotations

import threading
from collections import Counter


class BatchState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delay_s, self.error_rate, self.expire_rate = 0.0, 0.0, 0.0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.files: dict[str, dict] = {}
            self.batches: dict[str, dict] = {}
            self.seen: Counter = Counter()  # body key -> batches that carried it
            self.counts: Counter = Counter()

    def stats(self) -> dict:
        with self.lock:
            return {"batches_created": self.counts["batches"], "batch_requests": self.counts["requests"],
                    "batch_answers": self.counts["answers"], "batch_errors": self.counts["errors"],
                    "batch_expired": self.counts["expired"]}


